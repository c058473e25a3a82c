"""Provider adapters notify calls (SMS, WeCom, DingTalk, e-mail)."""
