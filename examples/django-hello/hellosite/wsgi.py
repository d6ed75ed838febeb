"""WSGI entry point: `gunicorn hellosite.wsgi` (see the Procfile)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hellosite.settings")

application = get_wsgi_application()
