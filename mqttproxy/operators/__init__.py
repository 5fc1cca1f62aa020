"""Operators of the web dashboard and API: accounts, login sessions, API tokens, login throttling."""

from mqttproxy.operators.service import ApiToken, LoginThrottle, Operator, Operators, WebSession

__all__ = ["ApiToken", "LoginThrottle", "Operator", "Operators", "WebSession"]
