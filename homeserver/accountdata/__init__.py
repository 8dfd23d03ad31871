"""Account data (global and per room), room tags, receipts and read markers."""
