"""The forms of our pages; Flask-WTF adds and checks the CSRF token of each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()
    submit = SubmitField("Sign in")


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
