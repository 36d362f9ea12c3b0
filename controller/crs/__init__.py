"""X.1125 correlative reacting system (CRS): the SCS core (pure logic) and the SCA agent.

| module | X.1125 clause | responsibility |
| messages    | 9, Annex A | CRSAP encoding, schema, HMAC, replay protection |
| policy      | 8          | evaluation / control / correlation policy from YAML |
| evaluation  | 8.1        | SCI -> security level |
| decision    | 8.2        | what must hold for one terminal (plain data) |
| control     | 8.2, 8.3   | level + group + correlation -> Decision |
| correlation | 7.2        | accusations, scan detection (TRW), group escalation |
| scs         | 11, 12.1   | the SCS state machine: effects as data |
| enforcement | 10 (NAC/ASC) | Decision -> table-1 OpenFlow messages |
| agent       | 11 (SCA)   | the terminal-side process (stdlib only) |
"""
