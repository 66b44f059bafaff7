"""Action and callback ids. The four decision actions are named by the contract."""

from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "finding.approve"
    PATCH = "finding.patch"
    IGNORE = "finding.ignore"
    ACK = "alert.ack"
    SHOW_ALL = "findings.show_all"


class InputId(StrEnum):
    """Block ids of the decision modal's inputs; each input's element has `INPUT_VALUE`."""

    REASON = "reason"
    EXPIRY = "expiry"
    SCOPE = "scope"


#: The action id of the one element in each of the decision modal's input blocks.
INPUT_VALUE = "value"


class CallbackId(StrEnum):
    APPROVE = "decision.approve"
    IGNORE = "decision.ignore"


#: Slack message metadata event type; its payload carries the outbox key of the message, which
#: lets a restarted bot find out whether a post it was unsure about reached Slack.
METADATA_EVENT_TYPE = "crowsnest_message"
