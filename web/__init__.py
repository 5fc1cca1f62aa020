"""Templates and static files of the dashboard, installed as the ``mqttproxy.web`` package data."""
