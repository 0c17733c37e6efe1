"""Slack simulator for tests and the local console: a fake Web API and a driver that plays Slack."""

from bot.sandbox.slack.driver import Delivery, SlackDriver
from bot.sandbox.slack.records import Ack, Call, Message, MessageVersion, UploadedFile
from bot.sandbox.slack.signing import sign
from bot.sandbox.slack.web_api import FakeSlack

__all__ = [
    "Ack",
    "Call",
    "Delivery",
    "FakeSlack",
    "Message",
    "MessageVersion",
    "SlackDriver",
    "UploadedFile",
    "sign",
]
