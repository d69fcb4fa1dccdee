"""Error pages in the site's layout. Django renders 400.html, 403.html, 403_csrf.html and 500.html by itself; these
are the ones it needs help with."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404


def bad_request(request: HttpRequest, message: str) -> HttpResponse:
    """400 from a view or middleware that knows what was wrong: the layout page, saying it."""
    return render(request, "400.html", {"message": message}, status=400)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: the view's own message ("No entry with this id in the mirror."), never the resolver's
    list of URL patterns."""
    message = ""
    if not isinstance(exception, Resolver404) and exception.args and isinstance(exception.args[0], str):
        message = exception.args[0]
    return render(request, "404.html", {"message": message}, status=404)
