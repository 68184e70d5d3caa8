"""MQTT bridge with Home Assistant discovery.

Modules: ``bridge`` (MqttBridge: composes the parts below, routes what the broker sends, HA replay),
``connection`` (one broker session at a time: TLS, will, v5 → 3.1.1 fallback, backoff), ``sync``
(retained read-back at each connect, catch-up), ``stale`` (which retained topics of ours are gone, and
which wait until their device reports its channels), ``publisher`` (drains the mirror onto
the broker, stats), ``mirror`` (hub → the retained topics, events and throttled meters wanted on the
broker; no I/O), ``topics`` (topic layout and JSON payloads, pure), ``discovery`` (HA device-based
discovery payloads, pure), ``commands`` (``…/set`` intake through the action layer), ``localbroker``
(a private Mosquitto for tests, benches and demos), ``bench`` (``micboardd bench mqtt``).

Topics under ``<base>`` (default ``micboard/<site>``); ids only ever ``[a-z0-9_-]``:

===========================================  ========  ==================================================
topic                                        retained  payload
===========================================  ========  ==================================================
``status``                                   yes       ``online`` / ``offline`` (LWT, qos 1)
``devices/<id>/availability``                yes       ``online`` / ``offline``
``devices/<id>/state``                       yes       device JSON
``channels/<id>/<n>/state``                  yes       channel + transmitter JSON, ``tx_state``,
                                                       ``battery_low``; no meters; ``null`` = unknown
``channels/<id>/<n>/<attr>``                 yes       flat values when ``mqtt.flat_topics`` (name,
                                                       frequency_mhz, tx_state, battery_percent, …)
``channels/<id>/<n>/meter``                  no        meters JSON, ≤ 1/``meter_interval_s``, deadband,
                                                       v5 message expiry 5 s
``slots/<n>/state``                          yes       performer, channel, battery, rf/audio summary,
                                                       alerts
``alerts``                                   no        ``{"event": raised|updated|acknowledged|cleared|
                                                       removed, "escalated": bool, "previous":
                                                       {"severity", "state"}|null, "alert": {…}}``
``alerts/active``                            yes       list of live alerts
``errors`` / ``results``                     no        refused or failed commands / command outcomes
``bridge/sync``                              no        the bridge's own marker at each (re)connect
``devices/<id>[/<attr>]/set``                —         identify, name (commands only when enabled)
``channels/<id>/<n>[/<attr>]/set``           —         identify, name, muted, gain_db,
                                                       frequency_khz|mhz, group_channel, or a JSON object
===========================================  ========  ==================================================

Home Assistant: ``<prefix>/device/micboardd_<site>/rx_<id>/config`` per receiver and
``<prefix>/device/micboardd_<site>/ch<n>_<id>/config`` per channel (``via_device`` its receiver);
every entity suggests the stable id ``<platform>.micboard_<site>_<id>[_<n>]_<component>``.
"""
