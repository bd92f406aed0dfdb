"""`evaccess server`: the cloud (REST API, web portal, OCPP endpoint)."""
