"""What customers are told, in their language: the operator's templates and the texts made from them.

The notifier sends these texts and ``hbdns notify preview`` (the admin CLI) shows exactly what it
would send; a service must not import another, so the texts live here in the core, not in
``notifier/``. One module each:

- :mod:`.catalog`: the template files (package defaults, each overridable from
  ``HBDNS_TEMPLATES_DIR``), loaded and checked at start-up;
- :mod:`.context`: what a template may use: an allowlist, so no secret ever reaches one;
- :mod:`.locale`: times and durations as each language writes them;
- :mod:`.render`: an event and its account -> subject, text, HTML and short text;
- :mod:`.sms`: an SMS text's length in GSM-7 septets or UCS-2 units, its segments, a clean cut;
- :mod:`.mail`: the e-mail itself (``email.message.EmailMessage``) with its headers;
- :mod:`.webhook`: the JSON a webhook receives.
"""

TEST_EVENT = "test"  # the event `hbdns notify test` writes: one test message on every channel
