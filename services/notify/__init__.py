"""通知 notify: who hears about what, by which channel, until someone acknowledges."""
