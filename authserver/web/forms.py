"""The forms of our pages; Flask-WTF adds and checks the CSRF token of each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import AnyOf, DataRequired, Length


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()
    submit = SubmitField("Sign in")


class NewPasswordForm(FlaskForm):  # type: ignore[misc]
    """The first admin's first sign-in: a password of their own for the one-time one."""

    password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField("New password again", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Set password")


class ChangePasswordForm(FlaskForm):  # type: ignore[misc]
    """A local user's own new password, on the account page: the current one first."""

    current = PasswordField("Current password", validators=[Length(max=1024)])
    password = PasswordField("New password", validators=[Length(max=1024)])
    confirm = PasswordField("New password again", validators=[Length(max=1024)])
    submit = SubmitField("Change password")


class SignOutEverywhereForm(FlaskForm):  # type: ignore[misc]
    submit = SubmitField("Sign out everywhere")


class ConsentForm(FlaskForm):  # type: ignore[misc]
    approve = SubmitField("Allow")
    deny = SubmitField("Deny")


class DeviceCodeForm(FlaskForm):  # type: ignore[misc]
    user_code = StringField("Code", validators=[DataRequired(), Length(max=32)])
    submit = SubmitField("Continue")


class DeviceDecisionForm(FlaskForm):  # type: ignore[misc]
    user_code = HiddenField(validators=[DataRequired(), Length(max=32)])
    approve = SubmitField("Approve")
    deny = SubmitField("Deny")


class LogoutForm(FlaskForm):  # type: ignore[misc]
    submit = SubmitField("Sign out")


# -- the admin dashboard (dashboard.py) ----------------------------------------------------
# These forms check the CSRF token and bound the lengths; the values themselves (names,
# roles, scopes, passwords) are checked by the operations of ``admin``, whose messages
# the dashboard shows. Role selects are filled from ``rbac.roles`` per request.

#: The expiry choices of a new service account (option values as shown, so that the
#: select needs no (value, label) pairs): seconds, ``None`` for never.
SERVICE_ACCOUNT_EXPIRIES: dict[str, int | None] = {
    "1 day": 86400,
    "7 days": 7 * 86400,
    "30 days": 30 * 86400,
    "90 days": 90 * 86400,
    "365 days": 365 * 86400,
    "never": None,
}


class CreateUserForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username", validators=[Length(max=255)])
    role = SelectField("Role", validate_choice=False)
    email = StringField("Email (optional)", validators=[Length(max=254)])
    password = PasswordField("Password (optional)", validators=[Length(max=1024)])
    submit = SubmitField("Create user")


class UserEmailForm(FlaskForm):  # type: ignore[misc]
    """A local user's email address; empty removes it."""

    username = HiddenField(validators=[DataRequired(), Length(max=255)])
    email = StringField("Email", validators=[Length(max=254)])
    submit = SubmitField("Save email")


class UserRoleForm(FlaskForm):  # type: ignore[misc]
    username = HiddenField(validators=[DataRequired(), Length(max=255)])
    role = SelectField("Role", validate_choice=False, validators=[DataRequired()])
    submit = SubmitField("Set role")


class UserDisabledForm(FlaskForm):  # type: ignore[misc]
    username = HiddenField(validators=[DataRequired(), Length(max=255)])
    disabled = HiddenField(validators=[AnyOf(["true", "false"])])
    submit = SubmitField("Disable")


class ResetPasswordForm(FlaskForm):  # type: ignore[misc]
    """An admin's new password for a local user: generated (shown once) or typed twice."""

    username = HiddenField(validators=[DataRequired(), Length(max=255)])
    how = SelectField(
        "New password",
        choices=[("generate", "Generate one (shown once)"), ("set", "Type one")],
        default="generate",
    )
    password = PasswordField("Password", validators=[Length(max=1024)])
    confirm = PasswordField("Password again", validators=[Length(max=1024)])
    submit = SubmitField("Reset password")


class DeleteUserForm(FlaskForm):  # type: ignore[misc]
    username = HiddenField(validators=[DataRequired(), Length(max=255)])
    submit = SubmitField("Delete user")


class ImportUsersForm(FlaskForm):  # type: ignore[misc]
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to import.")])
    submit = SubmitField("Import users")


class CreateServiceAccountForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[Length(max=255)])
    role = SelectField("Role", validate_choice=False)
    scopes = StringField("Scopes (optional, space-separated)", validators=[Length(max=2048)])
    expires_in = SelectField(
        "Expires in",
        choices=list(SERVICE_ACCOUNT_EXPIRIES),
        default="30 days",
    )
    #: A token (shown once), or a key file (downloaded once; private_key_jwt).
    credential = SelectField(
        "Credential",
        choices=["token", "key file"],
        default="token",
    )
    submit = SubmitField("Create service account")


class ServiceAccountActionForm(FlaskForm):  # type: ignore[misc]
    """Rotate or revoke the service account ``name``."""

    name = HiddenField(validators=[DataRequired(), Length(max=255)])
    submit = SubmitField("Confirm")


class RotateKeysForm(FlaskForm):  # type: ignore[misc]
    rotate_now = SubmitField("Rotate now")
    rotate_publish = SubmitField("Rotate (publish first)")
