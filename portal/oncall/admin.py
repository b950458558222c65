from django.contrib import admin

from portal.audit.admin import ReadOnlyAdmin
from portal.oncall.models import ContactMethod, NotificationRule, Override, RotationLayer, Schedule, TestPage

# Read-only: every change goes through portal.oncall.services (validated, permission-checked, audited)
# via /oncall/, /oncall/me/, the API or `manage.py contact_method`.
for model in (Schedule, RotationLayer, Override, ContactMethod, NotificationRule, TestPage):
    admin.site.register(model, ReadOnlyAdmin)
