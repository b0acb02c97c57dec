"""The bench's targets that both a single replay and the distribution over many houses judge by.

How long an overload lasts is what opens a fuse (a gG fuse holds 1.25 x its rating for an hour, an
MCB 1.13 x), so the longest run over the fuse is bounded, not the seconds compared with another
strategy.
"""

TARGET_FUSE_MARGIN_S = 3.0
TARGET_WRITES_PER_HOUR = 20.0
