"""The notifier (``hbdns-notifier``): turns the stream of transitions into e-mail, SMS and webhooks, each once."""
