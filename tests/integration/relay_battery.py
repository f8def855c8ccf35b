"""Open-relay test battery: recipient forms that must never be accepted from a
client that may not relay.

The forms come from the published open-relay test lists (the classic
"relay test" batteries run by ORBS/ordb-style probes, abuse.net's relay
tester, Sendmail's "Anti-Spam" notes on %-hack, bang paths and source routes,
and RFC 1123 5.2.16 / RFC 5321 Appendix C for source routes).  They are
written for a server whose local domain is ``local.test`` (``LOCAL``), whose
own address is 127.0.0.1 and with ``evil.example`` (``EVIL``) as the third
party the relay probe wants to reach.

Each entry is (rcpt, note): ``rcpt`` is the exact text that follows
``RCPT TO:`` (angle brackets included); ``note`` says what the trick tries.
A 2xx reply to any of them from a client that may not relay is an open
relay; a 5xx syntax error (501/553) or 554 5.7.1 is fine.
"""

LOCAL = "local.test"
EVIL = "evil.example"

BATTERY = [
    # ---- control: plain third-party domain --------------------------------
    ("<u@evil.example>", "plain third party: the baseline relay attempt"),
    ("<U@EVIL.EXAMPLE>", "plain third party, upper case"),

    # ---- percent hack (sendmail %-routing) --------------------------------
    ("<u%evil.example@local.test>", "percent hack: local.test forwards to u@evil.example"),
    ("<u%evil.example@LOCAL.TEST>", "percent hack, local domain in upper case"),
    ("<U%EVIL.EXAMPLE@Local.Test>", "percent hack, mixed case throughout"),
    ("<u%evil.example%local.test@local.test>", "percent hack with two hops: local.test, local.test again, then evil.example"),
    ("<u%evil.example@[IPv6:::1]>", "percent hack through our own IPv6 literal"),
    ("<u%evil.example@local.test.>", "percent hack with a trailing dot on the local domain"),
    ("<u%evil.example@[127.0.0.1]>", "percent hack through our own address literal"),
    ('<"u%evil.example"@local.test>', "percent hack hidden in a quoted local part"),
    ("<u%local.test@evil.example>", "reverse percent: local named only in the local part"),

    # ---- bang paths (UUCP) ------------------------------------------------
    ("<evil.example!u@local.test>", "bang path: local.test forwards to evil.example!u"),
    ("<evil.example!u>", "bare bang path without a domain (sendmail treats as UUCP)"),
    ("<local.test!evil.example!u>", "bang path with two hops"),
    ("<evil.example!u@[127.0.0.1]>", "bang path through our own address literal"),
    ('<"evil.example!u"@local.test>', "bang path hidden in a quoted local part"),
    ("<EVIL.EXAMPLE!U@Local.Test>", "bang path, mixed case"),
    ("<evil.example!u%local.test@local.test>", "bang path combined with a percent hack"),

    # ---- quoted local parts containing @ ----------------------------------
    ('<"u@evil.example"@local.test>', "quoted local part with @: forwards to u@evil.example"),
    ('<"u@evil.example">', "quoted address without a domain (sendmail re-parses it)"),
    ('<"u@evil.example"@[127.0.0.1]>', "quoted @ through our own address literal"),
    ('<"u\\@evil.example"@local.test>', "quoted local part with an escaped @"),
    ('<"u@evil.example"@LOCAL.TEST>', "quoted local part with @, local domain upper case"),
    ('<"u@[192.0.2.1]"@local.test>', "quoted local part holding an address-literal address"),

    # ---- several @ / unquoted forms ---------------------------------------
    ("<u@evil.example@local.test>", "two @, unquoted (sendmail takes the last @ as host)"),
    ("<u@local.test@evil.example>", "two @, local domain in the middle"),
    ("<u@evil.example@[127.0.0.1]>", "two @, ending in our address literal"),
    ("<u\\@evil.example@local.test>", "backslash-escaped @ in an unquoted local part"),

    # ---- source routes (RFC 5321 Appendix C) ------------------------------
    ("<@local.test:u@evil.example>", "source route with one hop through local"),
    ("<@local.test,@relay2.example:u@evil.example>", "source route with two hops"),
    ("<@local.test,@local.test,@local.test:u@evil.example>", "source route with three hops, all local"),
    ("<@[127.0.0.1]:u@evil.example>", "source route through our own address literal"),
    ("<@LOCAL.TEST:u@EVIL.EXAMPLE>", "source route, upper case"),
    ("<@local.test:u%evil.example@local.test>", "source route wrapped around a percent hack"),

    # ---- trailing dots / root label ---------------------------------------
    ("<u@local.test.>", "trailing dot on the local domain"),
    ("<u@evil.example.>", "trailing dot on a third-party domain"),
    ("<u%evil.example.@local.test>", "percent hack with a trailing dot on the target"),

    # ---- address literals -------------------------------------------------
    ("<u@[192.0.2.1]>", "address literal of another host"),
    ("<u@[127.0.0.1]>", "address literal of our own loopback address"),
    ("<u@[IPv6:::1]>", "IPv6 address literal of our own loopback address"),
    ("<u@[IPv6:2001:db8::1]>", "IPv6 address literal of another host"),
    ("<u@[3221225985]>", "address literal as a decimal integer (192.0.2.1)"),

    # ---- look-alike domains -----------------------------------------------
    ("<u@local.test.evil.example>", "local domain as a prefix of another domain"),
    ("<u@evil-local.test>", "local domain as a suffix of another label"),
    ("<u@evillocal.test>", "local domain as a string suffix without a dot"),
    ("<u@sub.local.test>", "subdomain of the local domain (not implied local)"),
    ("<u@local.tes>", "truncated local domain"),
    ("<u@local..test>", "empty label inside the local domain"),
]

assert len(BATTERY) >= 30
assert len({rcpt for rcpt, _ in BATTERY}) == len(BATTERY), "duplicate battery entry"
