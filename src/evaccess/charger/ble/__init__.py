"""The charger's Bluetooth LE half: the evaccess Access Service on a Bumble peripheral."""
