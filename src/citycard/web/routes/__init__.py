"""One router per area of the web application, listed in ``citycard.web.app.ROUTERS``."""
