"""受理 intake: messages from every channel, the citizen view, Open311."""
