"""Block Kit limits the bot renders within (Slack's published figures)."""

MAX_BLOCKS = 50
SECTION_TEXT = 3000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
CONTEXT_ELEMENTS = 10
# Slack rejects messages whose blocks add up to about 13,200 characters (msg_blocks_too_long),
# a limit it does not document; the bot keeps well below it.
TOTAL_BLOCK_TEXT = 12_000
# Detail longer than this goes into an attached file instead of a thread message.
DETAIL_TEXT = 2_800
