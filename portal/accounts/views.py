from axes.utils import reset as axes_reset
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from portal.accounts.clientip import client_ip
from portal.accounts.permissions import perm_required
from portal.accounts.reauth import mark_confirmed
from portal.accounts.roles import VIEW
from portal.audit.services import audit_record


class PortalLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["expired"] = self.request.GET.get("expired") == "1"
        return ctx


@perm_required(VIEW)
def reauth(request):
    """Confirm the password before a dangerous production action; then back to where it was asked."""
    nxt = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        nxt = "/"
    what = (request.POST.get("what") or request.GET.get("what") or "this action")[:120]
    error = ""
    if request.method == "POST":
        # Through authenticate(), like the login form: axes counts a wrong password against the same
        # username+address and refuses (even the right password) once AXES_FAILURE_LIMIT is reached.
        username = request.user.get_username()
        confirmed = authenticate(request, username=username, password=request.POST.get("password", ""))
        if getattr(request, "axes_locked_out", False):
            audit_record(actor=request.user, verb="user.reauth", target=request.user, extra={"for": what}, result="locked")
            return render(request, "registration/reauth.html", {"next": nxt, "what": what, "locked": True,
                          "error": "Too many wrong passwords: password confirmation is locked for a while."}, status=429)
        if confirmed is not None and confirmed.pk == request.user.pk:
            axes_reset(ip=client_ip(request), username=username)
            mark_confirmed(request)
            audit_record(actor=request.user, verb="user.reauth", target=request.user, extra={"for": what})
            messages.success(request, f"Password confirmed: you can now {what}.")
            return redirect(nxt)
        audit_record(actor=request.user, verb="user.reauth", target=request.user, extra={"for": what}, result="denied")
        error = "That password is not right."
    return render(request, "registration/reauth.html", {"next": nxt, "what": what, "error": error}, status=400 if error else 200)
