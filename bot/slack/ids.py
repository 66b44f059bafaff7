"""Action and callback ids, as the contract names them."""

from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "finding.approve"
    PATCH = "finding.patch"
    IGNORE = "finding.ignore"
    ACK = "alert.ack"


#: Slack message metadata event type; its payload carries the outbox key of the message, which
#: lets a restarted bot find out whether a post it was unsure about reached Slack.
METADATA_EVENT_TYPE = "crowsnest_message"
