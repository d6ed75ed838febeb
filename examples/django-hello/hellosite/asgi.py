"""ASGI entry point, for an ASGI server such as uvicorn (not used by the Procfile)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hellosite.settings")

application = get_asgi_application()
