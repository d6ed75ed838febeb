"""Settings for hellosite, configured from the environment as Berth provides it.

Config vars (`berth config set ...`):
  SECRET_KEY     required in production; a dev-only fallback is used otherwise
  DEBUG          "1"/"true"/"yes"/"on" to enable; off by default
  DATABASE_PATH  where the SQLite file lives (default: BASE_DIR / "db.sqlite3")
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# !!! DEV FALLBACK ONLY: set SECRET_KEY as a config var for any real deployment.
SECRET_KEY = os.environ.get(
    "SECRET_KEY",
    "django-insecure-dev-only-fallback-do-not-use-in-production",
)

DEBUG = os.environ.get("DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}

# Berth's router only forwards requests for the app's own hosts.
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "greetings",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hellosite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
            ],
        },
    },
]

WSGI_APPLICATION = "hellosite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DATABASE_PATH") or BASE_DIR / "db.sqlite3",
        # Both gunicorn workers write; wait for SQLite's lock, not 5 s then fail.
        "OPTIONS": {"timeout": 20},
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# `collectstatic` copies app static files into STATIC_ROOT at build time and
# Berth serves that folder itself under STATIC_URL.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Log to stdout/stderr so `berth logs` shows it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
