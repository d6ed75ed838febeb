from django.urls import path

from greetings import views

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("page", views.page, name="page"),
]
