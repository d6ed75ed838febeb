import os

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Greeting


def index(request: HttpRequest) -> HttpResponse:
    # Writes a row on every request: this only works once the release phase
    # (`python manage.py migrate`) has created the table.
    release = os.environ.get("BERTH_RELEASE", "dev")
    Greeting.objects.create(text=f"hello from release {release}")
    count = Greeting.objects.count()
    return HttpResponse(
        f"Hello from Django! greetings={count}\n", content_type="text/plain"
    )


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "greetings/page.html",
        {"release": os.environ.get("BERTH_RELEASE", "dev")},
    )
