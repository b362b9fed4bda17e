"""The employer's evidence report: one self-contained HTML page (inline CSS and SVG, no
script, no external asset) that an employer prints to PDF and hands to a labour inspector
(docs/evidence.md, "The report").

Every string that comes from the entries (worker names, reader names, causes, ONSS errors)
is user or network input and is escaped; the texts are data (TEXTS), one table per
language, filled with string.Template.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from string import Template
from zoneinfo import ZoneInfo

from gateway.evidence import ChainCheck, Entry
from gateway.models import Language
from gateway.outages import Analysis, Outage, OutageKind, RegistrationRecord, analyse

_EN: Mapping[str, str] = {
    "title": "Attendance registration evidence",
    "subtitle": "Outages, power cuts and reader failures recorded by the badge gateway, and what"
    " became of the registrations they held back. Kept by the employer as proof of force"
    " majeure; not sent to the ONSS.",
    "site": "Place of work",
    "declaration": "Declaration of works",
    "period": "Period",
    "period_range": "$start to $end",
    "times_in": "All times are local time ($zone).",
    "created": "Report created",
    "summary": "Summary",
    "sum_captured": "Registrations captured",
    "sum_acknowledged": "Acknowledged by the ONSS",
    "sum_late": "Acknowledged late",
    "sum_duplicated": "Possibly duplicated",
    "sum_rejected": "Rejected",
    "sum_chain": "Evidence log",
    "chain_ok": "intact (verified)",
    "chain_broken": "BROKEN at entry $seq",
    "kind_uplink": "Internet / ONSS unavailable",
    "kind_power-cut": "Power cut",
    "kind_crash": "Unexpected stop (software)",
    "kind_reader": "Badge reader failure",
    "kind_clock": "Clock not synchronised",
    "timeline": "Timeline",
    "track_uplink": "Internet / ONSS",
    "track_power": "Power / box",
    "track_reader": "Reader $reader",
    "track_clock": "Clock",
    "legend_taps": "badge taps captured",
    "legend_jump": "clock corrected",
    "legend_ongoing": "still ongoing at the end of the period",
    "outages": "Outages",
    "outages_intro": "Each period during which a link between the badge and the ONSS was not"
    " working. Registrations captured meanwhile were kept on the box and sent afterwards with"
    " their original time.",
    "power_note": "For a power cut or an unexpected stop, the start is the box's last sign of"
    " life (its last heartbeat) and the end its restart.",
    "col_no": "No.",
    "col_kind": "What failed",
    "col_cause": "Cause",
    "col_start": "From",
    "col_end": "Until",
    "col_duration": "Duration",
    "col_held": "Registrations held back",
    "col_acknowledged": "Acknowledged by the ONSS",
    "col_tap": "Tap",
    "col_type": "IN/OUT",
    "col_worker": "Worker",
    "col_niss": "NISS",
    "col_reader": "Reader",
    "col_onss_id": "ONSS registration id",
    "col_late": "Late",
    "col_delay": "Delay",
    "col_flagged": "Flagged",
    "col_rejected_at": "Rejected",
    "col_source": "By",
    "col_errors": "Errors",
    "col_when": "When",
    "col_correction": "Correction",
    "dir_IN": "IN",
    "dir_OUT": "OUT",
    "yes": "yes",
    "no": "no",
    "none": "None in this period.",
    "ongoing": "still ongoing",
    "at_least": "at least $duration",
    "or_earlier": "$time or earlier",
    "not_yet": "not yet",
    "rejected_cell": "rejected",
    "held_pending": "$count (+ $pending already waiting)",
    "ack_all": "all, by $time",
    "ack_some": "$done of $total, by $time",
    "n_not_yet": "$count not yet",
    "n_rejected": "$count rejected",
    "ack_none": "none yet",
    "held_title": "Outage $number: registrations held back",
    "cause_power-cut": "the box had no power (it restarted with a new boot)",
    "cause_crash": "the program stopped without closing (same boot)",
    "cause_clock": "time source: $source",
    "cause_dns": "name resolution (DNS) failed",
    "cause_tcp": "no network connection (TCP)",
    "cause_tls": "secure connection failed (TLS)",
    "cause_timeout": "no answer in time",
    "cause_token": "access token refused",
    "cause_forbidden": "access forbidden by the ONSS",
    "cause_http": "the ONSS service answered HTTP $status",
    "late_title": "Registrations acknowledged late",
    "late_intro": "Registrations that reached the ONSS later than usual after the tap (flagged"
    " late by the box), each sent with its original time.",
    "duplicated_title": "Possibly duplicated registrations",
    "duplicated_intro": "Sent without an answer and sent again: the ONSS may hold them twice."
    " They are not extra presences.",
    "rejected_title": "Rejected registrations",
    "rejected_intro": "Registrations the ONSS (or the box's own check) refused, with the errors"
    " given.",
    "source_onss": "ONSS",
    "source_local": "the box",
    "clock_title": "Clock corrections",
    "clock_intro": "Moments when the box's clock moved by more than 2 seconds against its steady"
    " internal clock. The original records are never rewritten.",
    "verification": "Verification",
    "verification_intro": "Every entry of the box's evidence log carries the SHA-256 of the"
    " entry before it, so that an edited, deleted, reordered or truncated entry is detected."
    " The export that comes with this report (entries.jsonl, manifest.json) can be checked on"
    " any computer with:",
    "ver_entries": "Entries in this report",
    "ver_first": "First entry",
    "ver_last": "Last entry",
    "ver_head": "Chain head at export",
    "ver_entry": "no. $seq, $time",
    "ver_result": "Result",
    "ver_ok": "Verified: the $count entries form an unbroken chain and every hash matches its"
    " entry.",
    "ver_broken": "NOT VERIFIED: the chain breaks at entry $seq ($problem): $detail",
    "ver_empty": "No entries in this period.",
    "problem_edited": "edited",
    "problem_deleted": "deleted",
    "problem_reordered": "reordered",
    "problem_inserted": "inserted",
    "problem_truncated": "truncated",
    "problem_wrong start": "wrong start",
    "problem_rewritten": "rewritten",
    "notes_title": "Entries that could not be read",
    "notes_intro": "These entries belong to the chain but their details do not have the"
    " expected form; the analysis above leaves them out.",
    "niss_masked": "NISS numbers are masked (the last 3 digits are shown).",
    "niss_full": "NISS numbers are shown in full at the employer's explicit request. Keep this"
    " document confidential.",
    "outside_period": "tap before this period",
    "footer": "Produced by badge-gateway from the box's evidence log.",
    "weekdays": "Mon Tue Wed Thu Fri Sat Sun",
    "date": "%d/%m/%Y",
    "day_month": "%d/%m",
    "unit_day": "d",
}

_FR: Mapping[str, str] = {
    "title": "Preuves relatives aux enregistrements de présence",
    "subtitle": "Pannes de connexion, coupures de courant et pannes de lecteur enregistrées par"
    " le terminal de badgeage, et le sort des enregistrements retenus pendant ces pannes."
    " Conservé par l'employeur comme preuve de force majeure ; non transmis à l'ONSS.",
    "site": "Lieu de travail",
    "declaration": "Déclaration de travaux",
    "period": "Période",
    "period_range": "du $start au $end",
    "times_in": "Toutes les heures sont en heure locale ($zone).",
    "created": "Rapport établi le",
    "summary": "Résumé",
    "sum_captured": "Enregistrements saisis",
    "sum_acknowledged": "Confirmés par l'ONSS",
    "sum_late": "Confirmés en retard",
    "sum_duplicated": "Doublons possibles",
    "sum_rejected": "Refusés",
    "sum_chain": "Journal de preuves",
    "chain_ok": "intact (vérifié)",
    "chain_broken": "ROMPU à l'entrée $seq",
    "kind_uplink": "Internet / ONSS indisponible",
    "kind_power-cut": "Coupure de courant",
    "kind_crash": "Arrêt inattendu (logiciel)",
    "kind_reader": "Panne du lecteur de badges",
    "kind_clock": "Horloge non synchronisée",
    "timeline": "Chronologie",
    "track_uplink": "Internet / ONSS",
    "track_power": "Alimentation / boîtier",
    "track_reader": "Lecteur $reader",
    "track_clock": "Horloge",
    "legend_taps": "badgeages enregistrés",
    "legend_jump": "horloge corrigée",
    "legend_ongoing": "toujours en cours à la fin de la période",
    "outages": "Pannes",
    "outages_intro": "Chaque période pendant laquelle un maillon entre le badge et l'ONSS ne"
    " fonctionnait pas. Les enregistrements saisis entre-temps ont été conservés sur le"
    " boîtier puis envoyés avec leur heure d'origine.",
    "power_note": "Pour une coupure de courant ou un arrêt inattendu, le début est le dernier"
    " signe de vie du boîtier (son dernier battement) et la fin son redémarrage.",
    "col_no": "N°",
    "col_kind": "Panne",
    "col_cause": "Cause",
    "col_start": "Début",
    "col_end": "Fin",
    "col_duration": "Durée",
    "col_held": "Enregistrements retenus",
    "col_acknowledged": "Confirmés par l'ONSS",
    "col_tap": "Badgeage",
    "col_type": "Entrée/sortie",
    "col_worker": "Travailleur",
    "col_niss": "NISS",
    "col_reader": "Lecteur",
    "col_onss_id": "N° d'enregistrement ONSS",
    "col_late": "En retard",
    "col_delay": "Délai",
    "col_flagged": "Signalé le",
    "col_rejected_at": "Refusé le",
    "col_source": "Par",
    "col_errors": "Erreurs",
    "col_when": "Quand",
    "col_correction": "Correction",
    "dir_IN": "ENTRÉE",
    "dir_OUT": "SORTIE",
    "yes": "oui",
    "no": "non",
    "none": "Néant pour cette période.",
    "ongoing": "toujours en cours",
    "at_least": "au moins $duration",
    "or_earlier": "$time ou avant",
    "not_yet": "pas encore",
    "rejected_cell": "refusé",
    "held_pending": "$count (+ $pending déjà en attente)",
    "ack_all": "tous, au plus tard le $time",
    "ack_some": "$done sur $total, au plus tard le $time",
    "n_not_yet": "$count pas encore",
    "n_rejected": "$count refusé(s)",
    "ack_none": "aucun pour l'instant",
    "held_title": "Panne $number : enregistrements retenus",
    "cause_power-cut": "le boîtier n'était plus alimenté (redémarrage complet)",
    "cause_crash": "le programme s'est arrêté sans se fermer (même démarrage)",
    "cause_clock": "source de temps : $source",
    "cause_dns": "résolution de nom (DNS) impossible",
    "cause_tcp": "pas de connexion réseau (TCP)",
    "cause_tls": "échec de la connexion sécurisée (TLS)",
    "cause_timeout": "pas de réponse à temps",
    "cause_token": "jeton d'accès refusé",
    "cause_forbidden": "accès refusé par l'ONSS",
    "cause_http": "le service de l'ONSS a répondu HTTP $status",
    "late_title": "Enregistrements confirmés en retard",
    "late_intro": "Enregistrements parvenus à l'ONSS plus tard que d'habitude après le badgeage"
    " (signalés en retard par le boîtier), chacun envoyé avec son heure d'origine.",
    "duplicated_title": "Enregistrements peut-être en double",
    "duplicated_intro": "Envoyés sans réponse puis renvoyés : l'ONSS peut les avoir reçus deux"
    " fois. Il ne s'agit pas de présences supplémentaires.",
    "rejected_title": "Enregistrements refusés",
    "rejected_intro": "Enregistrements refusés par l'ONSS (ou par le contrôle du boîtier), avec"
    " les erreurs indiquées.",
    "source_onss": "ONSS",
    "source_local": "le boîtier",
    "clock_title": "Corrections de l'horloge",
    "clock_intro": "Moments où l'horloge du boîtier a bougé de plus de 2 secondes par rapport à"
    " son horloge interne stable. Les enregistrements d'origine ne sont jamais réécrits.",
    "verification": "Vérification",
    "verification_intro": "Chaque entrée du journal de preuves du boîtier contient l'empreinte"
    " SHA-256 de l'entrée précédente : une entrée modifiée, supprimée, déplacée ou tronquée"
    " est détectée. L'export qui accompagne ce rapport (entries.jsonl, manifest.json) peut"
    " être vérifié sur tout ordinateur avec :",
    "ver_entries": "Entrées dans ce rapport",
    "ver_first": "Première entrée",
    "ver_last": "Dernière entrée",
    "ver_head": "Tête de la chaîne à l'export",
    "ver_entry": "n° $seq, $time",
    "ver_result": "Résultat",
    "ver_ok": "Vérifié : les $count entrées forment une chaîne ininterrompue et chaque"
    " empreinte correspond à son entrée.",
    "ver_broken": "NON VÉRIFIÉ : la chaîne est rompue à l'entrée $seq ($problem) : $detail",
    "ver_empty": "Aucune entrée pour cette période.",
    "problem_edited": "modifiée",
    "problem_deleted": "supprimée",
    "problem_reordered": "déplacée",
    "problem_inserted": "insérée",
    "problem_truncated": "tronquée",
    "problem_wrong start": "mauvais début",
    "problem_rewritten": "réécrite",
    "notes_title": "Entrées illisibles",
    "notes_intro": "Ces entrées font partie de la chaîne mais leurs détails n'ont pas la forme"
    " attendue ; l'analyse ci-dessus les laisse de côté.",
    "niss_masked": "Les numéros NISS sont masqués (les 3 derniers chiffres sont visibles).",
    "niss_full": "Les numéros NISS sont affichés en entier à la demande explicite de"
    " l'employeur. Document confidentiel.",
    "outside_period": "badgeage avant cette période",
    "footer": "Établi par badge-gateway à partir du journal de preuves du boîtier.",
    "weekdays": "lun. mar. mer. jeu. ven. sam. dim.",
    "date": "%d/%m/%Y",
    "day_month": "%d/%m",
    "unit_day": "j",
}

_NL: Mapping[str, str] = {
    "title": "Bewijsstukken bij de aanwezigheidsregistratie",
    "subtitle": "Verbindingsstoringen, stroomonderbrekingen en lezerdefecten vastgelegd door de"
    " badgeterminal, en wat er gebeurde met de registraties die daardoor werden"
    " tegengehouden. Door de werkgever bewaard als bewijs van overmacht; niet verzonden naar"
    " de RSZ.",
    "site": "Werkplaats",
    "declaration": "Aangifte van werken",
    "period": "Periode",
    "period_range": "van $start tot $end",
    "times_in": "Alle tijden zijn lokale tijd ($zone).",
    "created": "Rapport opgemaakt op",
    "summary": "Samenvatting",
    "sum_captured": "Vastgelegde registraties",
    "sum_acknowledged": "Bevestigd door de RSZ",
    "sum_late": "Laattijdig bevestigd",
    "sum_duplicated": "Mogelijke dubbels",
    "sum_rejected": "Geweigerd",
    "sum_chain": "Bewijslogboek",
    "chain_ok": "intact (geverifieerd)",
    "chain_broken": "GEBROKEN bij item $seq",
    "kind_uplink": "Internet / RSZ onbereikbaar",
    "kind_power-cut": "Stroomonderbreking",
    "kind_crash": "Onverwachte stop (software)",
    "kind_reader": "Defecte badgelezer",
    "kind_clock": "Klok niet gesynchroniseerd",
    "timeline": "Tijdlijn",
    "track_uplink": "Internet / RSZ",
    "track_power": "Stroom / toestel",
    "track_reader": "Lezer $reader",
    "track_clock": "Klok",
    "legend_taps": "vastgelegde badgeringen",
    "legend_jump": "klok gecorrigeerd",
    "legend_ongoing": "nog aan de gang op het einde van de periode",
    "outages": "Storingen",
    "outages_intro": "Elke periode waarin een schakel tussen de badge en de RSZ niet werkte."
    " Registraties die intussen werden vastgelegd, bleven op het toestel bewaard en werden"
    " nadien met hun oorspronkelijke tijdstip verzonden.",
    "power_note": "Bij een stroomonderbreking of een onverwachte stop is het begin het laatste"
    " levensteken van het toestel (zijn laatste hartslag) en het einde de herstart.",
    "col_no": "Nr.",
    "col_kind": "Storing",
    "col_cause": "Oorzaak",
    "col_start": "Begin",
    "col_end": "Einde",
    "col_duration": "Duur",
    "col_held": "Tegengehouden registraties",
    "col_acknowledged": "Bevestigd door de RSZ",
    "col_tap": "Badgering",
    "col_type": "In/uit",
    "col_worker": "Werknemer",
    "col_niss": "INSZ",
    "col_reader": "Lezer",
    "col_onss_id": "RSZ-registratienummer",
    "col_late": "Laattijdig",
    "col_delay": "Vertraging",
    "col_flagged": "Gemeld op",
    "col_rejected_at": "Geweigerd op",
    "col_source": "Door",
    "col_errors": "Fouten",
    "col_when": "Wanneer",
    "col_correction": "Correctie",
    "dir_IN": "IN",
    "dir_OUT": "UIT",
    "yes": "ja",
    "no": "nee",
    "none": "Geen in deze periode.",
    "ongoing": "nog aan de gang",
    "at_least": "minstens $duration",
    "or_earlier": "$time of vroeger",
    "not_yet": "nog niet",
    "rejected_cell": "geweigerd",
    "held_pending": "$count (+ $pending al in de wachtrij)",
    "ack_all": "alle, uiterlijk $time",
    "ack_some": "$done van $total, uiterlijk $time",
    "n_not_yet": "$count nog niet",
    "n_rejected": "$count geweigerd",
    "ack_none": "nog geen",
    "held_title": "Storing $number: tegengehouden registraties",
    "cause_power-cut": "het toestel had geen stroom (volledig herstart)",
    "cause_crash": "het programma stopte zonder af te sluiten (zelfde opstart)",
    "cause_clock": "tijdbron: $source",
    "cause_dns": "naamresolutie (DNS) mislukt",
    "cause_tcp": "geen netwerkverbinding (TCP)",
    "cause_tls": "beveiligde verbinding mislukt (TLS)",
    "cause_timeout": "geen tijdig antwoord",
    "cause_token": "toegangstoken geweigerd",
    "cause_forbidden": "toegang geweigerd door de RSZ",
    "cause_http": "de RSZ-dienst antwoordde HTTP $status",
    "late_title": "Laattijdig bevestigde registraties",
    "late_intro": "Registraties die later dan gewoonlijk na de badgering bij de RSZ aankwamen"
    " (door het toestel als laattijdig gemarkeerd), elk verzonden met het oorspronkelijke"
    " tijdstip.",
    "duplicated_title": "Mogelijk dubbele registraties",
    "duplicated_intro": "Verzonden zonder antwoord en opnieuw verzonden: de RSZ kan ze twee"
    " keer hebben ontvangen. Het zijn geen extra aanwezigheden.",
    "rejected_title": "Geweigerde registraties",
    "rejected_intro": "Registraties geweigerd door de RSZ (of door de controle van het"
    " toestel), met de opgegeven fouten.",
    "source_onss": "RSZ",
    "source_local": "het toestel",
    "clock_title": "Klokcorrecties",
    "clock_intro": "Momenten waarop de klok van het toestel meer dan 2 seconden verschoof ten"
    " opzichte van zijn stabiele interne klok. De oorspronkelijke gegevens worden nooit"
    " herschreven.",
    "verification": "Verificatie",
    "verification_intro": "Elk item van het bewijslogboek van het toestel bevat de SHA-256 van"
    " het vorige item, zodat een gewijzigd, verwijderd, verplaatst of afgekapt item wordt"
    " ontdekt. De export bij dit rapport (entries.jsonl, manifest.json) kan op elke computer"
    " worden gecontroleerd met:",
    "ver_entries": "Items in dit rapport",
    "ver_first": "Eerste item",
    "ver_last": "Laatste item",
    "ver_head": "Kop van de keten bij de export",
    "ver_entry": "nr. $seq, $time",
    "ver_result": "Resultaat",
    "ver_ok": "Geverifieerd: de $count items vormen een ononderbroken keten en elke hash klopt"
    " met zijn item.",
    "ver_broken": "NIET GEVERIFIEERD: de keten is gebroken bij item $seq ($problem): $detail",
    "ver_empty": "Geen items in deze periode.",
    "problem_edited": "gewijzigd",
    "problem_deleted": "verwijderd",
    "problem_reordered": "verplaatst",
    "problem_inserted": "ingevoegd",
    "problem_truncated": "afgekapt",
    "problem_wrong start": "verkeerd begin",
    "problem_rewritten": "herschreven",
    "notes_title": "Onleesbare items",
    "notes_intro": "Deze items horen bij de keten, maar hun details hebben niet de verwachte"
    " vorm; de analyse hierboven laat ze weg.",
    "niss_masked": "INSZ-nummers zijn gemaskeerd (de laatste 3 cijfers zijn zichtbaar).",
    "niss_full": "INSZ-nummers staan volledig vermeld op uitdrukkelijk verzoek van de"
    " werkgever. Vertrouwelijk document.",
    "outside_period": "badgering vóór deze periode",
    "footer": "Opgemaakt door badge-gateway op basis van het bewijslogboek van het toestel.",
    "weekdays": "ma di wo do vr za zo",
    "date": "%d-%m-%Y",
    "day_month": "%d-%m",
    "unit_day": "d",
}

_DE: Mapping[str, str] = {
    "title": "Nachweise zur Anwesenheitsregistrierung",
    "subtitle": "Verbindungsausfälle, Stromausfälle und Leserstörungen, die das Badge-Terminal"
    " aufgezeichnet hat, und was aus den dabei zurückgehaltenen Registrierungen wurde. Vom"
    " Arbeitgeber als Nachweis höherer Gewalt aufbewahrt; nicht an das LSS übermittelt.",
    "site": "Arbeitsort",
    "declaration": "Meldung der Arbeiten",
    "period": "Zeitraum",
    "period_range": "vom $start bis $end",
    "times_in": "Alle Zeiten in Ortszeit ($zone).",
    "created": "Bericht erstellt am",
    "summary": "Zusammenfassung",
    "sum_captured": "Erfasste Registrierungen",
    "sum_acknowledged": "Vom LSS bestätigt",
    "sum_late": "Verspätet bestätigt",
    "sum_duplicated": "Mögliche Duplikate",
    "sum_rejected": "Abgelehnt",
    "sum_chain": "Nachweisprotokoll",
    "chain_ok": "unversehrt (geprüft)",
    "chain_broken": "UNTERBROCHEN bei Eintrag $seq",
    "kind_uplink": "Internet / LSS nicht erreichbar",
    "kind_power-cut": "Stromausfall",
    "kind_crash": "Unerwarteter Halt (Software)",
    "kind_reader": "Ausfall des Badge-Lesers",
    "kind_clock": "Uhr nicht synchronisiert",
    "timeline": "Zeitachse",
    "track_uplink": "Internet / LSS",
    "track_power": "Strom / Gerät",
    "track_reader": "Leser $reader",
    "track_clock": "Uhr",
    "legend_taps": "erfasste Badge-Vorgänge",
    "legend_jump": "Uhr korrigiert",
    "legend_ongoing": "dauert am Ende des Zeitraums noch an",
    "outages": "Ausfälle",
    "outages_intro": "Jeder Zeitraum, in dem ein Glied zwischen Badge und LSS nicht"
    " funktionierte. Zwischenzeitlich erfasste Registrierungen wurden auf dem Gerät"
    " gespeichert und später mit ihrer ursprünglichen Uhrzeit übermittelt.",
    "power_note": "Bei einem Stromausfall oder unerwarteten Halt ist der Beginn das letzte"
    " Lebenszeichen des Geräts (sein letzter Herzschlag) und das Ende sein Neustart.",
    "col_no": "Nr.",
    "col_kind": "Ausfall",
    "col_cause": "Ursache",
    "col_start": "Beginn",
    "col_end": "Ende",
    "col_duration": "Dauer",
    "col_held": "Zurückgehaltene Registrierungen",
    "col_acknowledged": "Vom LSS bestätigt",
    "col_tap": "Badge-Vorgang",
    "col_type": "Ein/Aus",
    "col_worker": "Arbeitnehmer",
    "col_niss": "ENSS",
    "col_reader": "Leser",
    "col_onss_id": "LSS-Registrierungsnummer",
    "col_late": "Verspätet",
    "col_delay": "Verzögerung",
    "col_flagged": "Gemeldet am",
    "col_rejected_at": "Abgelehnt am",
    "col_source": "Durch",
    "col_errors": "Fehler",
    "col_when": "Wann",
    "col_correction": "Korrektur",
    "dir_IN": "EIN",
    "dir_OUT": "AUS",
    "yes": "ja",
    "no": "nein",
    "none": "Keine in diesem Zeitraum.",
    "ongoing": "dauert noch an",
    "at_least": "mindestens $duration",
    "or_earlier": "$time oder früher",
    "not_yet": "noch nicht",
    "rejected_cell": "abgelehnt",
    "held_pending": "$count (+ $pending bereits wartend)",
    "ack_all": "alle, spätestens $time",
    "ack_some": "$done von $total, spätestens $time",
    "n_not_yet": "$count noch nicht",
    "n_rejected": "$count abgelehnt",
    "ack_none": "noch keine",
    "held_title": "Ausfall $number: zurückgehaltene Registrierungen",
    "cause_power-cut": "das Gerät war ohne Strom (vollständiger Neustart)",
    "cause_crash": "das Programm hielt an, ohne sich zu beenden (gleicher Systemstart)",
    "cause_clock": "Zeitquelle: $source",
    "cause_dns": "Namensauflösung (DNS) fehlgeschlagen",
    "cause_tcp": "keine Netzwerkverbindung (TCP)",
    "cause_tls": "sichere Verbindung fehlgeschlagen (TLS)",
    "cause_timeout": "keine Antwort innerhalb der Frist",
    "cause_token": "Zugriffstoken abgelehnt",
    "cause_forbidden": "Zugriff vom LSS verweigert",
    "cause_http": "der LSS-Dienst antwortete HTTP $status",
    "late_title": "Verspätet bestätigte Registrierungen",
    "late_intro": "Registrierungen, die das LSS später als üblich nach dem Badge-Vorgang"
    " erreichten (vom Gerät als verspätet markiert), jeweils mit ihrer ursprünglichen"
    " Uhrzeit übermittelt.",
    "duplicated_title": "Möglicherweise doppelte Registrierungen",
    "duplicated_intro": "Ohne Antwort gesendet und erneut gesendet: Das LSS hat sie"
    " möglicherweise doppelt erhalten. Es handelt sich nicht um zusätzliche Anwesenheiten.",
    "rejected_title": "Abgelehnte Registrierungen",
    "rejected_intro": "Vom LSS (oder von der Prüfung des Geräts) abgelehnte Registrierungen mit"
    " den angegebenen Fehlern.",
    "source_onss": "LSS",
    "source_local": "das Gerät",
    "clock_title": "Uhrkorrekturen",
    "clock_intro": "Zeitpunkte, zu denen die Uhr des Geräts um mehr als 2 Sekunden gegenüber"
    " seiner stabilen internen Uhr sprang. Die ursprünglichen Aufzeichnungen werden nie"
    " überschrieben.",
    "verification": "Prüfung",
    "verification_intro": "Jeder Eintrag des Nachweisprotokolls des Geräts enthält den SHA-256"
    " des vorherigen Eintrags, sodass ein geänderter, gelöschter, vertauschter oder"
    " abgeschnittener Eintrag erkannt wird. Der Export zu diesem Bericht (entries.jsonl,"
    " manifest.json) kann auf jedem Computer geprüft werden mit:",
    "ver_entries": "Einträge in diesem Bericht",
    "ver_first": "Erster Eintrag",
    "ver_last": "Letzter Eintrag",
    "ver_head": "Kettenkopf beim Export",
    "ver_entry": "Nr. $seq, $time",
    "ver_result": "Ergebnis",
    "ver_ok": "Geprüft: Die $count Einträge bilden eine lückenlose Kette und jeder Hash stimmt"
    " mit seinem Eintrag überein.",
    "ver_broken": "NICHT GEPRÜFT: Die Kette bricht bei Eintrag $seq ($problem): $detail",
    "ver_empty": "Keine Einträge in diesem Zeitraum.",
    "problem_edited": "geändert",
    "problem_deleted": "gelöscht",
    "problem_reordered": "vertauscht",
    "problem_inserted": "eingefügt",
    "problem_truncated": "abgeschnitten",
    "problem_wrong start": "falscher Anfang",
    "problem_rewritten": "umgeschrieben",
    "notes_title": "Nicht lesbare Einträge",
    "notes_intro": "Diese Einträge gehören zur Kette, aber ihre Details haben nicht die"
    " erwartete Form; die obige Auswertung lässt sie aus.",
    "niss_masked": "ENSS-Nummern sind maskiert (die letzten 3 Ziffern sind sichtbar).",
    "niss_full": "ENSS-Nummern werden auf ausdrücklichen Wunsch des Arbeitgebers vollständig"
    " angezeigt. Vertrauliches Dokument.",
    "outside_period": "Badge-Vorgang vor diesem Zeitraum",
    "footer": "Erstellt von badge-gateway aus dem Nachweisprotokoll des Geräts.",
    "weekdays": "Mo. Di. Mi. Do. Fr. Sa. So.",
    "date": "%d.%m.%Y",
    "day_month": "%d.%m.",
    "unit_day": "T",
}

TEXTS: Mapping[Language, Mapping[str, str]] = {
    Language.EN: _EN,
    Language.FR: _FR,
    Language.NL: _NL,
    Language.DE: _DE,
}

_NBSP = "\u00a0"  # keeps a date, or a duration, on one line in a narrow column
_KNOWN_CAUSES = frozenset({"dns", "tcp", "tls", "timeout", "token", "forbidden"})


@dataclass(frozen=True, slots=True)
class ReportContext:
    site_name: str
    declaration: str
    language: Language
    tz: ZoneInfo
    period_from_ns: int
    period_to_ns: int
    check: ChainCheck  # of the exported entries
    head: Entry | None  # the chain head when exporting (may lie after the period)
    created_ns: int | None = None


def render_report(
    entries: Iterable[Entry], context: ReportContext, *, full_niss: Mapping[str, str] | None = None
) -> str:
    """The whole report as one HTML document. `full_niss` (registration id -> NISS) is the
    employer's explicit choice to show NISS numbers in full."""
    ordered = list(entries)
    analysis = analyse(ordered)
    out = _Writer(context, full_niss, ordered[-1].wall_ns if ordered else context.period_to_ns)
    numbered = list(enumerate(analysis.outages, start=1))
    sections = [
        _header(out),
        _summary(out, analysis),
        _timeline(out, analysis, numbered),
        _outage_table(out, numbered),
        *(_held_table(out, number, outage) for number, outage in numbered if outage.held),
        _late_table(out, analysis),
        _duplicated_table(out, analysis),
        _rejected_table(out, analysis),
        _clock_table(out, analysis),
        _verification(out, ordered),
        _notes(out, analysis),
        f"<footer>{out.t('footer')}</footer>",
    ]
    return _page(out, "\n".join(section for section in sections if section))


class _Writer:
    """Texts and values of one report, as escaped HTML."""

    def __init__(
        self, context: ReportContext, full_niss: Mapping[str, str] | None, last_ns: int
    ) -> None:
        self.context = context
        self.texts = TEXTS[context.language]
        self.full_niss = full_niss
        self.last_ns = last_ns  # an ongoing outage lasted at least until the last entry

    def t(self, key: str, **values: object) -> str:
        template = Template(html.escape(self.texts[key]))
        return template.substitute({name: html.escape(str(v)) for name, v in values.items()})

    def local(self, wall_ns: int) -> datetime:
        """To the second, truncated (a float division would round 23:59:59.9999999999 up)."""
        return datetime.fromtimestamp(wall_ns // 1_000_000_000, tz=self.context.tz)

    def weekday(self, moment: datetime) -> str:
        return self.texts["weekdays"].split()[moment.weekday()]

    # day, when, hour and duration are made of digits and of this module's own texts: plain
    # text that needs no escaping, and can be template values.
    def day(self, wall_ns: int) -> str:
        moment = self.local(wall_ns)
        return f"{self.weekday(moment)}{_NBSP}{moment.strftime(self.texts['date'])}"

    def when(self, wall_ns: int) -> str:
        return f"{self.day(wall_ns)} {self.local(wall_ns):%H:%M:%S}"

    def hour(self, wall_ns: int) -> str:
        return f"{self.local(wall_ns):%H:%M}"

    def duration(self, span_ns: int) -> str:
        minutes = max(round(span_ns / 60e9), 0)
        days, minutes = divmod(minutes, 24 * 60)
        hours, minutes = divmod(minutes, 60)
        if days:
            text = f"{days} {self.texts['unit_day']} {hours} h {minutes:02d}"
        elif hours:
            text = f"{hours} h {minutes:02d} min"
        else:
            text = f"{minutes} min" if minutes else f"{max(round(span_ns / 1e9), 0)} s"
        return text.replace(" ", _NBSP)

    def niss(self, record: RegistrationRecord) -> str:
        if self.full_niss and record.id in self.full_niss:
            return html.escape(self.full_niss[record.id])
        return html.escape(record.captured.niss) if record.captured else ""

    def direction(self, value: str) -> str:
        key = f"dir_{value}"
        return self.t(key) if key in self.texts else html.escape(value)


# --- Page and sections ------------------------------------------------------------------


def _page(out: _Writer, body: str) -> str:
    title = f"{out.t('title')} — {html.escape(out.context.site_name)}"
    return (
        f'<!DOCTYPE html>\n<html lang="{out.context.language.value}">\n<head>\n'
        f'<meta charset="utf-8">\n<meta name="viewport" content="width=device-width">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _section(title: str, body: str, intro: str = "", section_class: str = "") -> str:
    classes = f' class="{section_class}"' if section_class else ""
    paragraph = f'<p class="intro">{intro}</p>' if intro else ""
    return f"<section{classes}>\n<h2>{title}</h2>\n{paragraph}\n{body}\n</section>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: _Writer, css: str) -> str:
    if not rows:
        return f'<p class="none">{out.t("none")}</p>'
    head = "".join(f"<th>{header}</th>" for header in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (
        f'<table class="{css}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


def _header(out: _Writer) -> str:
    context = out.context
    facts = [
        (out.t("site"), html.escape(context.site_name)),
        (out.t("declaration"), f"<code>{html.escape(context.declaration) or '—'}</code>"),
        (out.t("period"), _period(out)),
    ]
    if context.created_ns is not None:
        facts.append((out.t("created"), out.when(context.created_ns)))
    niss_note = out.t("niss_full" if out.full_niss else "niss_masked")
    return (
        f'<header>\n<h1>{out.t("title")}</h1>\n<p class="subtitle">{out.t("subtitle")}</p>\n'
        f"{_facts(facts)}\n"
        f'<p class="small">{out.t("times_in", zone=context.tz.key)} {niss_note}</p>\n</header>'
    )


def _period(out: _Writer) -> str:
    """Whole days (an export's --from/--to dates) as dates, the last one included."""
    start, end = out.context.period_from_ns, out.context.period_to_ns
    if _is_midnight(out, start) and _is_midnight(out, end) and end > start:
        return out.t("period_range", start=out.day(start), end=out.day(end - 1))
    return out.t("period_range", start=out.when(start), end=out.when(end))


def _is_midnight(out: _Writer, wall_ns: int) -> bool:
    moment = out.local(wall_ns)
    return (moment.hour, moment.minute, moment.second) == (0, 0, 0) and not wall_ns % 10**9


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in pairs)
    return f'<dl class="facts">{items}</dl>'


def _summary(out: _Writer, analysis: Analysis) -> str:
    check = out.context.check
    chain = (
        f'<span class="ok">{out.t("chain_ok")}</span>'
        if check.ok
        else f'<span class="bad">{out.t("chain_broken", seq=_break_seq(check))}</span>'
    )
    counts = [(out.t(f"kind_{kind.value}"), _count(analysis.outages, kind)) for kind in OutageKind]
    figures = [
        (out.t("sum_captured"), analysis.captured),
        (out.t("sum_acknowledged"), analysis.acknowledged),
        *counts,
        (out.t("sum_late"), len(analysis.late)),
        (out.t("sum_duplicated"), len(analysis.duplicated)),
        (out.t("sum_rejected"), len(analysis.rejected)),
    ]
    tiles = "".join(
        f'<div class="tile{" zero" if not n else ""}"><b>{n}</b><span>{name}</span></div>'
        for name, n in figures
    )
    chain_tile = f'<div class="tile chain"><span>{out.t("sum_chain")}</span>{chain}</div>'
    return _section(out.t("summary"), f'<div class="tiles">{tiles}{chain_tile}</div>')


def _count(outages: Sequence[Outage], kind: OutageKind) -> int:
    return sum(outage.kind == kind for outage in outages)


def _break_seq(check: ChainCheck) -> int:
    return check.broken.seq if check.broken else 0


# --- Timeline (inline SVG) --------------------------------------------------------------

_WIDTH = 1000
_LEFT = 150  # the track labels' column
_RIGHT = 992
_AXIS = 30
_ROW = 46
_BAR_TOP, _BAR_HEIGHT = 8, 16  # within a row
_LABEL_WIDTH = 70  # about, of a bar's "#n 09:10–12:14" label


@dataclass(frozen=True, slots=True)
class _Scale:
    start_ns: int
    end_ns: int

    def x(self, wall_ns: int) -> float:
        span = max(self.end_ns - self.start_ns, 1)
        fraction = min(max((wall_ns - self.start_ns) / span, 0.0), 1.0)
        return round(_LEFT + fraction * (_RIGHT - _LEFT), 1)


def _track_of(outage: Outage) -> str:
    if outage.kind in (OutageKind.POWER_CUT, OutageKind.CRASH):
        return "power"
    if outage.kind == OutageKind.READER:
        return f"reader:{outage.subject}"
    return outage.kind.value


def _tracks(out: _Writer, analysis: Analysis) -> dict[str, str]:
    """Track key -> label (escaped), top to bottom."""
    readers = {f"reader:{name}": out.t("track_reader", reader=name) for name in analysis.readers}
    readers |= {
        key: out.t("track_reader", reader=o.subject)
        for o in analysis.outages
        if (key := _track_of(o)).startswith("reader:") and key not in readers
    }
    return {
        "uplink": out.t("track_uplink"),
        "power": out.t("track_power"),
        **readers,
        "clock": out.t("track_clock"),
    }


def _timeline(out: _Writer, analysis: Analysis, numbered: Sequence[tuple[int, Outage]]) -> str:
    scale = _Scale(out.context.period_from_ns, out.context.period_to_ns)
    tracks = _tracks(out, analysis)
    row_of = {key: _AXIS + index * _ROW for index, key in enumerate(tracks)}
    height = _AXIS + _ROW * len(tracks)
    parts = [
        *_day_grid(out, scale, height),
        *(_track_row(label, row_of[key]) for key, label in tracks.items()),
        *_tap_ticks(analysis, scale, row_of),
        *(_bar(out, scale, row_of[_track_of(o)], number, o) for number, o in numbered),
        *(_jump_mark(out, scale, row_of["clock"], jump.wall_ns, jump.correction_ns)
          for jump in analysis.clock_jumps),
    ]  # fmt: skip
    svg = (
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}"'
        f' height="{height}" role="img" aria-label="{out.t("timeline")}"'
        f' xmlns="http://www.w3.org/2000/svg">\n' + "\n".join(parts) + "\n</svg>"
    )
    return _section(out.t("timeline"), svg + _legend(out), section_class="keep")


def _day_grid(out: _Writer, scale: _Scale, height: int) -> list[str]:
    midnights = _local_midnights(out.context.tz, scale.start_ns, scale.end_ns)
    every = max(1, math.ceil(len(midnights) / 14))  # at most 14 day labels
    parts = []
    for index, (day_start, day_end) in enumerate(itertools.pairwise(midnights)):
        x1, x2 = scale.x(day_start), scale.x(day_end)
        shade = "day odd" if index % 2 else "day"
        parts.append(f'<rect class="{shade}" x="{x1}" y="{_AXIS - 4}" width="{x2 - x1}"'
                     f' height="{height - _AXIS + 4}"/>')  # fmt: skip
        if index % every == 0:
            moment = out.local(day_start)
            label = f"{out.weekday(moment)} {moment.strftime(out.texts['day_month'])}"
            parts.append(f'<text class="day" x="{(x1 + x2) / 2}" y="{_AXIS - 10}"'
                         f' text-anchor="middle">{html.escape(label)}</text>')  # fmt: skip
    parts.extend(f'<line class="midnight" x1="{scale.x(m)}" y1="{_AXIS - 4}" x2="{scale.x(m)}"'
                 f' y2="{height}"/>' for m in midnights)  # fmt: skip
    return parts


def _local_midnights(tz: ZoneInfo, start_ns: int, end_ns: int) -> list[int]:
    """The local midnights from the one at or before start to the one at or after end."""
    day = datetime.fromtimestamp(start_ns // 1_000_000_000, tz=tz).date()
    midnights: list[int] = []
    while not midnights or midnights[-1] < end_ns:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        midnights.append(int(midnight.timestamp()) * 1_000_000_000)
        day += timedelta(days=1)
    return midnights


def _track_row(label: str, y: int) -> str:
    middle = y + _BAR_TOP + _BAR_HEIGHT / 2
    return (
        f'<text class="track" x="{_LEFT - 8}" y="{middle + 4}" text-anchor="end">{label}</text>'
        f'<line class="baseline" x1="{_LEFT}" y1="{middle}" x2="{_RIGHT}" y2="{middle}"/>'
    )


def _tap_ticks(analysis: Analysis, scale: _Scale, row_of: Mapping[str, int]) -> list[str]:
    ticks = []
    for record in analysis.records:
        captured = record.captured
        y = row_of.get(f"reader:{captured.reader}") if captured else None
        if captured is None or y is None:
            continue
        x = scale.x(captured.wall_ns)
        top = y + _BAR_TOP + 3
        ticks.append(f'<line class="tap" x1="{x}" y1="{top}" x2="{x}" y2="{top + 10}"/>')
    return ticks


def _bar(out: _Writer, scale: _Scale, y: int, number: int, outage: Outage) -> str:
    end_ns = outage.end_ns if outage.end_ns is not None else out.context.period_to_ns
    x1, x2 = scale.x(outage.start_ns), scale.x(end_ns)
    width = max(x2 - x1, 3.0)
    ends = out.hour(outage.end_ns) if outage.end_ns is not None else "…"
    label = f"#{number} {out.hour(outage.start_ns)}–{ends}"
    title = f"#{number} {out.t(f'kind_{outage.kind.value}')}: {_span_text(out, outage)}"
    anchor, text_x = _label_anchor((x1 + x1 + width) / 2)
    ongoing = " ongoing" if outage.ongoing else ""
    return (
        f'<g class="bar k-{outage.kind.value}{ongoing}"><title>{title}</title>'
        f'<rect x="{x1}" y="{y + _BAR_TOP}" width="{width}" height="{_BAR_HEIGHT}" rx="2"/>'
        f'<text x="{text_x}" y="{y + _BAR_TOP + _BAR_HEIGHT + 12}"'
        f' text-anchor="{anchor}">{html.escape(label)}</text></g>'
    )


def _label_anchor(middle: float) -> tuple[str, float]:
    """Keep a bar's label inside the plot near its edges."""
    if middle - _LABEL_WIDTH / 2 < _LEFT:
        return "start", _LEFT
    if middle + _LABEL_WIDTH / 2 > _RIGHT:
        return "end", _RIGHT
    return "middle", middle


def _span_text(out: _Writer, outage: Outage) -> str:
    end = out.when(outage.end_ns) if outage.end_ns is not None else out.t("ongoing")
    return f"{_start_text(out, outage)} – {end}"


def _jump_mark(out: _Writer, scale: _Scale, y: int, wall_ns: int, correction_ns: int) -> str:
    x, middle = scale.x(wall_ns), y + _BAR_TOP + _BAR_HEIGHT / 2
    title = f"{out.t('legend_jump')}: {out.when(wall_ns)}, {_correction(correction_ns)}"
    return (
        f'<g class="jump"><title>{title}</title><path d="M{x},{middle - 7} l5,7 l-5,7 l-5,-7 z"/>'
        "</g>"
    )


def _legend(out: _Writer) -> str:
    kinds = "".join(
        f"<span>{_swatch(f'k-{kind.value}')} {out.t(f'kind_{kind.value}')}</span>"
        for kind in OutageKind
    )
    tap = '<svg width="14" height="12"><line class="tap" x1="7" y1="1" x2="7" y2="11"/></svg>'
    jump = '<svg width="14" height="14" class="jump"><path d="M7,0 l5,7 l-5,7 l-5,-7 z"/></svg>'
    extras = (
        f"<span>{_swatch('k-uplink ongoing')} {out.t('legend_ongoing')}</span>"
        f"<span>{tap} {out.t('legend_taps')}</span><span>{jump} {out.t('legend_jump')}</span>"
    )
    return f'<p class="legend">{kinds}{extras}</p>'


def _swatch(css: str) -> str:
    return (
        f'<svg width="14" height="12" class="bar {css}">'
        '<rect x="1" y="1" width="12" height="10" rx="2"/></svg>'
    )


# --- Tables -----------------------------------------------------------------------------


def _outage_table(out: _Writer, numbered: Sequence[tuple[int, Outage]]) -> str:
    headers = [out.t(key) for key in _OUTAGE_COLUMNS]
    rows = [_outage_row(out, number, outage) for number, outage in numbered]
    intro = f"{out.t('outages_intro')} {out.t('power_note')}"
    return _section(out.t("outages"), _table(headers, rows, out, "outages"), intro)


_OUTAGE_COLUMNS = (
    "col_no", "col_kind", "col_cause", "col_start", "col_end", "col_duration", "col_held",
    "col_acknowledged",
)  # fmt: skip


def _outage_row(out: _Writer, number: int, outage: Outage) -> list[str]:
    kind = outage.kind.value
    return [
        f'<span id="outage-{number}">{number}</span>',
        f"{_swatch(f'k-{kind}')} {out.t(f'kind_{kind}')}",
        _cause(out, outage),
        _start_text(out, outage),
        out.when(outage.end_ns) if outage.end_ns is not None else f"<em>{out.t('ongoing')}</em>",
        _duration_text(out, outage),
        _held_text(out, outage),
        _acknowledged_text(out, outage),
    ]


def _start_text(out: _Writer, outage: Outage) -> str:
    start = out.when(outage.start_ns)
    return out.t("or_earlier", time=start) if outage.began_before else start


def _duration_text(out: _Writer, outage: Outage) -> str:
    end_ns = out.last_ns if outage.end_ns is None else outage.end_ns
    duration = out.duration(end_ns - outage.start_ns)
    bounded = outage.began_before or outage.end_ns is None
    return out.t("at_least", duration=duration) if bounded else duration


def _cause(out: _Writer, outage: Outage) -> str:
    kind = outage.kind
    if kind in (OutageKind.POWER_CUT, OutageKind.CRASH):
        return out.t(f"cause_{kind.value}")
    if kind == OutageKind.READER:
        return f"<b>{html.escape(outage.subject)}</b><br><small>{html.escape(outage.cause)}</small>"
    if kind == OutageKind.CLOCK:
        return out.t("cause_clock", source=outage.cause) if outage.cause else "—"
    detail = f"<br><small>{html.escape(outage.detail)}</small>" if outage.detail else ""
    return _uplink_cause(out, outage.cause) + detail


def _uplink_cause(out: _Writer, cause: str) -> str:
    code = f" <code>{html.escape(cause)}</code>" if cause else ""
    if cause in _KNOWN_CAUSES:
        return out.t(f"cause_{cause}") + code
    if cause.startswith("http "):
        return out.t("cause_http", status=cause.removeprefix("http ")) + code
    return html.escape(cause) or "—"


def _held_text(out: _Writer, outage: Outage) -> str:
    if outage.kind != OutageKind.UPLINK:
        return "—"
    if outage.pending_at_start:
        return out.t("held_pending", count=len(outage.held), pending=outage.pending_at_start)
    return str(len(outage.held))


def _acknowledged_text(out: _Writer, outage: Outage) -> str:
    held = outage.held
    if not held:
        return "—"
    times = [r.acknowledgement.wall_ns for r in held if r.acknowledgement]
    if len(times) == len(held):
        return out.t("ack_all", time=out.when(max(times)))
    rejected = sum(r.acknowledgement is None and r.rejection is not None for r in held)
    waiting = len(held) - len(times) - rejected
    parts = [
        out.t("ack_some", done=len(times), total=len(held), time=out.when(max(times)))
        if times
        else out.t("ack_none")
    ]
    if rejected:
        parts.append(out.t("n_rejected", count=rejected))
    if waiting and times:
        parts.append(out.t("n_not_yet", count=waiting))
    return "; ".join(parts)


_REGISTRATION_COLUMNS = ("col_tap", "col_type", "col_worker", "col_niss")


def _registration_cells(out: _Writer, record: RegistrationRecord) -> list[str]:
    captured = record.captured
    if captured is None:
        outside = f'<span class="muted">{out.t("outside_period")}</span>'
        return [outside, "", f'<code class="id">{html.escape(record.id)}</code>', out.niss(record)]
    return [
        out.when(captured.wall_ns),
        out.direction(captured.direction),
        html.escape(captured.worker),
        f'<span class="niss">{out.niss(record)}</span>',
    ]


def _registrations_table(
    out: _Writer,
    records: Sequence[RegistrationRecord],
    columns: Sequence[str],
    cells: Callable[[RegistrationRecord], list[str]],
) -> str:
    headers = [out.t(key) for key in (*_REGISTRATION_COLUMNS, *columns)]
    rows = [[*_registration_cells(out, record), *cells(record)] for record in records]
    return _table(headers, rows, out, "registrations")


def _held_table(out: _Writer, number: int, outage: Outage) -> str:
    table = _registrations_table(
        out,
        outage.held,
        ("col_reader", "col_acknowledged", "col_onss_id", "col_late"),
        lambda record: _delivery_cells(out, record),
    )
    return _section(out.t("held_title", number=number), table, section_class="held")


def _delivery_cells(out: _Writer, record: RegistrationRecord) -> list[str]:
    reader = html.escape(record.captured.reader) if record.captured else ""
    ack = record.acknowledgement
    if ack is not None:
        late = f'<b class="late">{out.t("yes")}</b>' if ack.late else out.t("no")
        return [reader, out.when(ack.wall_ns), _onss_id(record), late]
    if record.rejection is not None:
        return [reader, f'<span class="bad">{out.t("rejected_cell")}</span>', "", ""]
    return [reader, out.t("not_yet"), "", ""]


def _onss_id(record: RegistrationRecord) -> str:
    ack = record.acknowledgement
    return f'<code class="id">{html.escape(ack.onss_id)}</code>' if ack else ""


def _late_table(out: _Writer, analysis: Analysis) -> str:
    table = _registrations_table(
        out,
        analysis.late,
        ("col_acknowledged", "col_delay", "col_onss_id"),
        lambda record: [*_acknowledged_and_delay(out, record), _onss_id(record)],
    )
    return _section(out.t("late_title"), table, out.t("late_intro"))


def _acknowledged_and_delay(out: _Writer, record: RegistrationRecord) -> list[str]:
    ack, captured = record.acknowledgement, record.captured
    if ack is None:
        return ["", ""]
    delay = out.duration(ack.wall_ns - captured.wall_ns) if captured else ""
    return [out.when(ack.wall_ns), delay]


def _duplicated_table(out: _Writer, analysis: Analysis) -> str:
    by_record = {id(duplicate.record): duplicate for duplicate in analysis.duplicated}

    def cells(record: RegistrationRecord) -> list[str]:
        duplicate = by_record[id(record)]
        return [out.when(duplicate.flagged_ns), html.escape(duplicate.cause), _onss_id(record)]

    table = _registrations_table(
        out,
        [duplicate.record for duplicate in analysis.duplicated],
        ("col_flagged", "col_cause", "col_onss_id"),
        cells,
    )
    return _section(out.t("duplicated_title"), table, out.t("duplicated_intro"))


def _rejected_table(out: _Writer, analysis: Analysis) -> str:
    table = _registrations_table(
        out,
        analysis.rejected,
        ("col_rejected_at", "col_source", "col_errors"),
        lambda record: _rejection_cells(out, record),
    )
    return _section(out.t("rejected_title"), table, out.t("rejected_intro"))


def _rejection_cells(out: _Writer, record: RegistrationRecord) -> list[str]:
    rejection = record.rejection
    if rejection is None:
        return ["", "", ""]
    source_key = f"source_{rejection.source}"
    source = out.t(source_key) if source_key in out.texts else html.escape(rejection.source)
    errors = "<br>".join(html.escape(error) for error in rejection.errors)
    return [out.when(rejection.wall_ns), source, errors]


def _clock_table(out: _Writer, analysis: Analysis) -> str:
    if not analysis.clock_jumps:
        return ""
    headers = [out.t("col_when"), out.t("col_correction")]
    rows = [[out.when(j.wall_ns), _correction(j.correction_ns)] for j in analysis.clock_jumps]
    return _section(out.t("clock_title"), _table(headers, rows, out, "clock"), out.t("clock_intro"))


def _correction(correction_ns: int) -> str:
    return f"{correction_ns / 1e9:+.1f} s"


# --- Verification and notes -------------------------------------------------------------


def _verification(out: _Writer, entries: Sequence[Entry]) -> str:
    context = out.context
    facts = [(out.t("ver_entries"), str(len(entries)))]
    if entries:
        facts.append((out.t("ver_first"), _entry_ref(out, entries[0])))
        facts.append((out.t("ver_last"), _entry_ref(out, entries[-1])))
    if context.head is not None:
        facts.append((out.t("ver_head"), _entry_ref(out, context.head)))
    facts.append((out.t("ver_result"), _verdict(out, context.check)))
    command = "<pre>badge-gateway evidence verify --export DIR</pre>"
    body = f'{_facts(facts)}\n<p class="intro">{out.t("verification_intro")}</p>{command}'
    return _section(out.t("verification"), body, section_class="keep verification")


def _entry_ref(out: _Writer, entry: Entry) -> str:
    where = out.t("ver_entry", seq=entry.seq, time=out.when(entry.wall_ns))
    return f'{where}<br><code class="hash">{html.escape(entry.hash)}</code>'


def _verdict(out: _Writer, check: ChainCheck) -> str:
    broken = check.broken
    if broken is not None:
        problem_key = f"problem_{broken.problem}"
        problem = out.texts.get(problem_key, broken.problem)
        text = out.t("ver_broken", seq=broken.seq, problem=problem, detail=broken.detail)
        return f'<span class="bad">{text}</span>'
    if not check.entries:
        return out.t("ver_empty")
    return f'<span class="ok">{out.t("ver_ok", count=check.entries)}</span>'


def _notes(out: _Writer, analysis: Analysis) -> str:
    if not analysis.notes:
        return ""
    headers = ["seq", out.t("col_kind"), out.t("col_errors")]
    rows = [[str(n.seq), html.escape(n.kind), html.escape(n.problem)] for n in analysis.notes]
    return _section(out.t("notes_title"), _table(headers, rows, out, "notes"), out.t("notes_intro"))


_CSS = """
@page { size: A4; margin: 14mm 12mm 16mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: #1d2430; background: #eceff3;
  font: 13px/1.45 "DejaVu Sans", "Segoe UI", "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 24px auto; padding: 36px 44px 28px; background: #fff;
  box-shadow: 0 1px 4px rgba(0, 0, 0, .18); }
h1 { font-size: 22px; margin: 0 0 4px; color: #173a63; }
h2 { font-size: 15px; margin: 26px 0 8px; padding-bottom: 3px; color: #173a63;
  border-bottom: 2px solid #173a63; break-after: avoid; page-break-after: avoid; }
header { border-bottom: 1px solid #c9d1dc; padding-bottom: 8px; }
.subtitle { color: #4a5565; margin: 0 0 12px; max-width: 62em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0 0 8px; }
dl.facts dt { color: #4a5565; }
dl.facts dd { margin: 0; font-weight: 600; }
.small, .intro { color: #4a5565; font-size: 12px; margin: 0 0 6px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 8px; }
.tile { border: 1px solid #c9d1dc; border-radius: 4px; padding: 6px 10px; break-inside: avoid; }
.tile b { display: block; font-size: 20px; line-height: 1.2; }
.tile span { font-size: 11px; color: #4a5565; }
.tile.zero b { color: #9aa3af; }
.tile.chain { grid-column: span 2; }
.tile.chain span { display: block; }
.tile.chain .ok, .tile.chain .bad { font-size: 14px; }
.ok { color: #1d7a3a; font-weight: 700; }
.bad { color: #b3261e; font-weight: 700; }
.late { color: #a35200; }
table { width: 100%; border-collapse: collapse; font-size: 12px; margin: 4px 0 8px; }
th { text-align: left; vertical-align: bottom; font-weight: 600; padding: 5px 6px;
  background: #eef2f7; border-bottom: 1.5px solid #9aa6b6; }
td { vertical-align: top; padding: 4px 6px; border-bottom: 1px solid #dde3ea; }
tr, .keep, .tile { break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; }
table.outages td:first-child { font-weight: 700; }
code, pre { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 11px; }
code.hash { word-break: break-all; color: #33404f; }
pre { background: #f4f6f9; border: 1px solid #dde3ea; padding: 6px 10px; margin: 4px 0; }
.muted, small { color: #5f6b7a; }
.none { color: #5f6b7a; font-style: italic; }
svg.timeline { width: 100%; height: auto; display: block; margin: 6px 0 2px; }
svg.timeline text { font-size: 11px; fill: #1d2430; }
svg.timeline text.track { font-weight: 600; }
svg.timeline text.day { font-size: 11px; fill: #4a5565; }
svg.timeline .bar text { font-size: 10px; }
.day { fill: #ffffff; }
.day.odd { fill: #f3f5f8; }
.midnight { stroke: #c3cad4; stroke-width: 1; }
.baseline { stroke: #9fb8a6; stroke-width: 2; }
.tap { stroke: #6b7685; stroke-width: 1; }
.jump path { fill: #173a63; }
.bar rect { stroke-width: 1; }
.k-uplink rect { fill: #f2a541; stroke: #b86a12; }
.k-power-cut rect { fill: #d6574c; stroke: #9b2c22; }
.k-crash rect { fill: #a57ad6; stroke: #6c43a0; }
.k-reader rect { fill: #4f8fd0; stroke: #245f9c; }
.k-clock rect { fill: #d9c43a; stroke: #8d7d10; }
.bar.ongoing rect { fill-opacity: .45; stroke-dasharray: 3 2; }
.legend { font-size: 11px; color: #4a5565; margin: 4px 0 0; }
.legend span { display: inline-block; margin-right: 14px; white-space: nowrap; }
.legend svg, td svg { vertical-align: -1px; }
footer { margin-top: 24px; padding-top: 6px; font-size: 11px; color: #5f6b7a;
  border-top: 1px solid #c9d1dc; }
@media print {
  body { background: #fff; font-size: 11px; }
  main { max-width: none; margin: 0; padding: 0; box-shadow: none; }
  h2 { margin-top: 18px; }
}
"""
