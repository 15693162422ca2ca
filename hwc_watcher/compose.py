"""Write the notice, the receipt, the read receipt, the alerts and the drill report.

Pure: values in, `EmailMessage` out, built with the standard library's `email` package
so that a name with CR/LF or other control characters cannot add a header. What goes where:

* notice: the pupil's name and birth date in the body only — never in the subject, which
  shows on lock screens and in notification pop-ups;
* receipt and read receipt to VT: no pupil data at all;
* alerts: a short instruction, no content from any message.

Texts use `string.Template` (`$name`), so an admin's own text cannot reach Python objects.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import textwrap
from collections.abc import Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from string import Template

from hwc_watcher.models import Person, Pupil, RouteDecision
from hwc_watcher.notice_id import NoticeIds
from hwc_watcher.settings import Config

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")

NL_MONTHS = (
    "januari", "februari", "maart", "april", "mei", "juni",
    "juli", "augustus", "september", "oktober", "november", "december",
)  # fmt: skip

TEXTS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "notice": (
            "Beste $coordinator,\n\n"
            "Veilig Thuis heeft een Handle with Care-signaal gestuurd voor deze leerling:\n\n"
            "    Naam:          $pupil_name\n"
            "    Geboortedatum: $birth_date\n"
            "$details"
            "\nWat te doen vandaag:\n"
            "- Zoek de leerling op, het liefst vóór het eerste lesuur.\n"
            "- Vraag wat hij of zij vandaag nodig heeft (een rustige plek, een toets later maken, even\n"
            "  een time-out). Je hoeft niet te weten wat er thuis is gebeurd.\n"
            "- Bespreek samen met de leerling wie op school het mag weten.\n\n"
            "${keeping}"
            "Dit bericht is automatisch verstuurd vanuit de Handle with Care-mailbox van $school.\n"
        ),
        "keep_notice": (
            "Bewaar deze e-mail niet: verwijder hem nadat je de leerling hebt gesproken, ook uit\n"
            "'Verwijderde items'. Noteer het signaal niet in het leerlingvolgsysteem. Dat heeft\n"
            "$school afgesproken in het Handle with Care-convenant.\n\n"
        ),
        "recall_notice": (
            "Deze e-mail verdwijnt $moment vanzelf uit je mailbox, ook uit 'Verwijderde items'.\n"
            "Wil je iets onthouden, doe dat dan zoals het protocol het toestaat (mondeling), niet door\n"
            "de e-mail te bewaren, en noteer het signaal niet in het leerlingvolgsysteem. Dat heeft\n"
            "$school afgesproken in het Handle with Care-convenant.\n\n"
        ),
        "not_in_list": (
            "    Let op:        deze leerling is niet gevonden in de leerlingenlijst. Geef dit\n"
            "                   bericht direct door aan de juiste zorgcoördinator.\n"
        ),
        "ambiguous_in_list": (
            "    Let op:        deze leerling is niet met zekerheid gevonden in de leerlingenlijst.\n"
            "                   Controleer wie het is en geef dit bericht zo nodig door.\n"
        ),
        "receipt_subject": "Ontvangstbevestiging Handle with Care",
        "receipt": (
            "Geachte medewerker van Veilig Thuis,\n\n"
            "Hierbij bevestigt $school de ontvangst van uw Handle with Care-bericht van $received.\n"
            "Het bericht is doorgegeven aan de zorgcoördinator en daarna uit onze mailbox verwijderd.\n\n"
            "Met vriendelijke groet,\n"
            "$school\n\n"
            "Dit is een automatisch bericht.\n"
        ),
        "alert_subject": "Actie nodig: Handle with Care-mailbox",
        "alert_deadline": (
            "Het is $deadline en de Handle with Care-mailbox is niet volledig verwerkt:\n\n"
            "    $problem\n"
            "    $detail\n\n"
            "Controleer de HwC-mailbox nu handmatig en informeer zo nodig de zorgcoördinator\n"
            "vóór het eerste lesuur.\n\n"
            "Deze melding bevat bewust geen gegevens van leerlingen.\n"
        ),
        "alert_failure": (
            "hwc-watcher kan de Handle with Care-mailbox niet verwerken:\n\n"
            "    $error\n\n"
            "Geef dit door aan de ICT-beheerder. Controleer tot het is opgelost de HwC-mailbox\n"
            "elke ochtend handmatig.\n"
        ),
        "alert_recovered": (
            "hwc-watcher werkt weer: de Handle with Care-mailbox is om $moment gecontroleerd en\n"
            "er wacht niets meer.\n"
        ),
        "alert_digest": (
            "hwc-watcher heeft iets gevonden waar nu een persoon naar moet kijken:\n\n"
            "$items\n"
            "Berichten in de HwC-mailbox waar dit over gaat blijven staan en zijn gemarkeerd. Handel ze af\n"
            "zoals het Handle with Care-protocol zegt: zorgcoördinator informeren, ontvangstbevestiging\n"
            "sturen, bericht overal verwijderen (ook uit 'Verwijderde items').\n\n"
            "Deze melding bevat bewust geen gegevens uit de berichten.\n"
        ),
        "item_waiting": "- Een bericht in $folder (ontvangen $received): $problem.\n",
        "item_bounce": "- Een bericht in $folder (ontvangen $received): $problem. Geweigerd adres: $refused.\n",
        "item_strangers": (
            "- $messages met het codewoord Handle with Care van een afzender buiten Veilig Thuis. Dat is geen\n"
            "  signaal: geef niets door en stuur geen ontvangstbevestiging. Twijfel je, bel dan eerst Veilig Thuis.\n"
        ),
        "item_more": "- en nog $count andere meldingen (zie de HwC-mailbox).\n",
        "item_away": (
            "- $coordinator (route '$route') antwoordde om $moment automatisch: afwezig. De achterwacht heeft\n"
            "  de melding nu ook gekregen, en krijgt vandaag ook de volgende meldingen voor deze collega.\n"
        ),
        "item_away_late": (
            "- $coordinator (route '$route') antwoordde om $moment automatisch: afwezig. Dat gaat over een\n"
            "  melding van $sent die misschien niet gelezen is. De naam staat niet meer in de HwC-mailbox:\n"
            "  vraag het na bij de collega of de achterwacht, of bel Veilig Thuis.\n"
        ),
        "unknown_address": "een adres dat niet in de configuratie staat",
        "item_delivery": "- Een melding kon niet worden afgeleverd bij $failed (route '$route'); $outcome\n",
        "outcome_backup": "de achterwacht heeft hem gekregen. Laat de ICT-beheerder dit adres nakijken.",
        "outcome_nobody": (
            "niemand heeft hem gekregen. Open het bericht in de HwC-mailbox en licht de\n"
            "  zorgcoördinator vandaag mondeling in; laat de ICT-beheerder het adres nakijken."
        ),
        "item_test_bounce": (
            "- Het testbericht van hwc-watcher aan $refused kwam terug: dat adres bestaat niet of weigert\n"
            "  mail. Pas het adres aan in de configuratie (het teruggekomen bericht wordt verwijderd).\n"
        ),
        "item_signal_failed": (
            "- Een signaal kon niet volledig worden verwerkt ($cause). Het bericht blijft staan:\n"
            "  handel het vandaag met de hand af volgens het werkproces.\n"
        ),
        "item_pupil_list": (
            "- De leerlingenlijst ($file) kan niet worden gebruikt. Tot dit is opgelost gaan alle\n"
            "  meldingen naar de standaard-zorgcoördinator. Stuur dit door naar de ICT-beheerder:\n"
            "  `hwc-watcher check` zegt wat er mis is.\n"
        ),
        "item_cleanup": (
            "- Na het verwerken zijn nog $count bericht(en) gevonden die verwijderd hadden moeten zijn.\n"
            "  Controleer de mappen van de HwC-mailbox en verwijder ze met de hand.\n"
        ),
        "drill_ok": (
            "Oefening geslaagd: ontvangen $received, afzender: $trust, verwijderd $deleted.\n\n"
            "hwc-watcher stuurde om $sent een testbericht van de Handle with Care-mailbox aan zichzelf. Het\n"
            "kwam aan en is overal verwijderd.\n$proof\n\nJe hoeft niets te doen.\n"
        ),
        "drill_failed": (
            "Oefening MISLUKT bij stap '$step': $error\n\n"
            "Oplossing: $fix\n\n"
            "Stappen: $steps\n\n"
            "hwc-watcher stuurde om $sent een testbericht van de Handle with Care-mailbox aan zichzelf, om de\n"
            "hele keten te controleren. Tot dit is opgelost komt een signaal van Veilig Thuis\n"
            "misschien niet vanzelf bij de zorgcoördinator: geef dit door aan de ICT-beheerder en controleer\n"
            "de HwC-mailbox elke ochtend met de hand.\n"
        ),
        "alert_recall": (
            "hwc-watcher kon de meldingen niet (helemaal) terughalen uit de mailbox van $mailbox\n"
            "(stap: $step):\n\n"
            "    $error\n\n"
            "Het probeert het om $retry opnieuw. Geef dit door aan de ICT-beheerder; tot het is opgelost\n"
            "blijven meldingen in die mailbox staan (de zorgcoördinator kan ze zelf verwijderen, ook uit\n"
            "'Verwijderde items').\n\n"
            "Deze melding bevat bewust geen gegevens van leerlingen.\n"
        ),
        "alert_left_alone": (
            "In de HwC-mailbox staan $count bericht(en) die niet van Veilig Thuis komen (het oudste van\n"
            "$oldest). hwc-watcher laat ze staan: kijk ze na en verwijder ze. Het convenant vraagt een\n"
            "lege mailbox.\n"
        ),
    },
    "en": {
        "notice": (
            "Dear $coordinator,\n\n"
            "Veilig Thuis has sent a Handle with Care signal for this pupil:\n\n"
            "    Name:          $pupil_name\n"
            "    Date of birth: $birth_date\n"
            "$details"
            "\nWhat to do today:\n"
            "- Find the pupil, preferably before the first lesson.\n"
            "- Ask what they need today (a quiet place, a test moved, a time-out). You do not\n"
            "  need to know what happened at home.\n"
            "- Agree with the pupil who at school may know.\n\n"
            "${keeping}"
            "This message was sent automatically from the Handle with Care mailbox of $school.\n"
        ),
        "keep_notice": (
            "Do not keep this e-mail: delete it after you have spoken to the pupil, also from\n"
            "'Deleted items', and do not record the signal anywhere. $school agreed to this in\n"
            "the Handle with Care covenant.\n\n"
        ),
        "recall_notice": (
            "This e-mail disappears from your mailbox $moment, also from 'Deleted items'. If you\n"
            "want to remember something, do so as the protocol allows (by word of mouth), not by\n"
            "keeping the e-mail, and do not record the signal anywhere. $school agreed to this in\n"
            "the Handle with Care covenant.\n\n"
        ),
        "not_in_list": (
            "    Note:          this pupil was not found in the pupil list. Pass this message on\n"
            "                   to the right care coordinator now.\n"
        ),
        "ambiguous_in_list": (
            "    Note:          this pupil was not found with certainty in the pupil list. Check\n"
            "                   who it is and pass this message on if needed.\n"
        ),
        "receipt_subject": "Receipt Handle with Care",
        "receipt": (
            "Dear colleague at Veilig Thuis,\n\n"
            "$school confirms receipt of your Handle with Care message of $received.\n"
            "It was passed on to the care coordinator and then deleted from our mailbox.\n\n"
            "Kind regards,\n$school\n\nThis is an automatic message.\n"
        ),
        "alert_subject": "Action needed: Handle with Care mailbox",
        "alert_deadline": (
            "It is $deadline and the Handle with Care mailbox has not been fully processed:\n\n"
            "    $problem\n"
            "    $detail\n\n"
            "Check the HwC mailbox by hand now and inform the care coordinator before the first\n"
            "lesson if needed.\n\n"
            "This alert deliberately contains no pupil data.\n"
        ),
        "alert_failure": (
            "hwc-watcher cannot process the Handle with Care mailbox:\n\n"
            "    $error\n\n"
            "Pass this on to the ICT admin. Until it is fixed, check the HwC mailbox by hand\n"
            "every morning.\n"
        ),
        "alert_recovered": (
            "hwc-watcher works again: the Handle with Care mailbox was checked at $moment and\n"
            "nothing is waiting.\n"
        ),
        "alert_digest": (
            "hwc-watcher found something a person must look at now:\n\n"
            "$items\n"
            "Messages in the HwC mailbox this is about stay where they are and are marked. Handle them as\n"
            "the Handle with Care protocol says: inform the care coordinator, send a receipt, delete the\n"
            "message everywhere (also from 'Deleted items').\n\n"
            "This alert deliberately contains nothing from the messages.\n"
        ),
        "item_waiting": "- A message in $folder (received $received): $problem.\n",
        "item_bounce": "- A message in $folder (received $received): $problem. Refused address: $refused.\n",
        "item_strangers": (
            "- $messages with the code word Handle with Care from a sender outside Veilig Thuis. That is no\n"
            "  signal: pass nothing on and send no receipt. If in doubt, call Veilig Thuis first.\n"
        ),
        "item_more": "- and $count more (see the HwC mailbox).\n",
        "item_away": (
            "- $coordinator (route '$route') answered automatically at $moment: away. The backup now has the\n"
            "  notice too, and gets today's further notices for this colleague as well.\n"
        ),
        "item_away_late": (
            "- $coordinator (route '$route') answered automatically at $moment: away. That concerns a notice\n"
            "  of $sent that may be unread. The name is no longer in the HwC mailbox: ask the colleague or\n"
            "  the backup, or call Veilig Thuis.\n"
        ),
        "unknown_address": "an address that is not in the configuration",
        "item_delivery": "- A notice could not be delivered to $failed (route '$route'); $outcome\n",
        "outcome_backup": "the backup got it instead. Ask the ICT admin to check this address.",
        "outcome_nobody": (
            "nobody got it. Open the message in the HwC mailbox and tell the care coordinator\n"
            "  in person today; ask the ICT admin to check the address."
        ),
        "item_test_bounce": (
            "- The hwc-watcher test mail to $refused came back: that address does not exist or refuses\n"
            "  mail. Correct it in the config (the returned message is deleted).\n"
        ),
        "item_signal_failed": (
            "- A signal could not be completed ($cause). The message stays in the mailbox:\n"
            "  handle it by hand today as the work process says.\n"
        ),
        "item_pupil_list": (
            "- The pupil list ($file) cannot be used. Until this is fixed every notice goes to the\n"
            "  default care coordinator. Pass this on to the ICT admin: `hwc-watcher check` says\n"
            "  what is wrong.\n"
        ),
        "item_cleanup": (
            "- After processing, $count message(s) that should have been deleted were still found.\n"
            "  Check the folders of the HwC mailbox and delete them by hand.\n"
        ),
        "drill_ok": (
            "Drill passed: received $received, sender: $trust, deleted $deleted.\n\n"
            "At $sent hwc-watcher sent a test mail from the Handle with Care mailbox to itself. It arrived\n"
            "and was deleted everywhere.\n$proof\n\nYou need not do anything.\n"
        ),
        "drill_failed": (
            "Drill FAILED at step '$step': $error\n\n"
            "Fix: $fix\n\n"
            "Steps: $steps\n\n"
            "At $sent hwc-watcher sent a test mail from the Handle with Care mailbox to itself, to check the\n"
            "whole chain. Until this is fixed a signal from Veilig Thuis may not reach the\n"
            "care coordinator by itself: pass this on to the ICT admin and check the HwC mailbox by hand\n"
            "every morning.\n"
        ),
        "alert_recall": (
            "hwc-watcher could not (completely) recall the notices from the mailbox of $mailbox\n"
            "(step: $step):\n\n"
            "    $error\n\n"
            "It tries again at $retry. Pass this on to the ICT admin; until it is fixed, notices stay in\n"
            "that mailbox (the care coordinator can delete them, also from 'Deleted items').\n\n"
            "This alert deliberately contains no pupil data.\n"
        ),
        "alert_left_alone": (
            "The HwC mailbox holds $count message(s) that are not from Veilig Thuis (the oldest from\n"
            "$oldest). hwc-watcher leaves them alone: look at them and delete them. The covenant asks\n"
            "for an empty mailbox.\n"
        ),
    },
}

#: Subjects of the drill report: (passed, failed).
DRILL_SUBJECTS: Mapping[str, tuple[str, str]] = {
    "nl": ("Oefening Handle with Care-mailbox geslaagd", "Actie nodig: oefening Handle with Care-mailbox mislukt"),
    "en": ("Handle with Care mailbox drill passed", "Action needed: Handle with Care mailbox drill failed"),
}

#: The drill mail itself: marked TEST, no code word, no pupil data.
DRILL_MAIL_SUBJECT: Mapping[str, str] = {"nl": "TEST – oefening hwc-watcher", "en": "TEST – hwc-watcher drill"}
DRILL_MAIL_BODY: Mapping[str, str] = {
    "nl": ("Dit is een oefening van hwc-watcher: de koppeling stuurt zichzelf een bericht om te controleren "
           "dat mail aankomt en dat de mailserver de afzender bevestigt. Het wordt meteen automatisch "
           "verwijderd. Dit bericht bevat geen gegevens over leerlingen.\n"),
    "en": ("This is an hwc-watcher drill: the link sends itself a message to check that mail arrives and that "
           "the mail server vouches for the sender. It is deleted automatically at once. This message "
           "contains no data about pupils.\n"),
}


#: Reason codes explained for the person who gets the alert (no message content).
PROBLEMS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "not_authenticated": "afzender niet bevestigd door de mailserver (mogelijk vervalst)",
        "no_pupil": "geen naam met geboortedatum gevonden",
        "ambiguous": "naam of geboortedatum niet eenduidig",
        "no_code_word": "bericht van Veilig Thuis zonder het codewoord",
        "encrypted": "versleuteld bericht",
        "secure_mail_notice": "bericht via een beveiligde-mailportaal",
        "attachment_only": "inhoud alleen in een bijlage",
        "bounce_of_notice": "een melding aan de zorgcoördinator is NIET aangekomen: informeer hem of haar nu",
        "incomplete": "bericht nog niet volledig ontvangen",
        "too_large": "bericht te groot om automatisch te lezen",
        "signal_failed": "signaal kon niet volledig worden verwerkt (mailserver)",
        "unreadable": "bericht kon niet worden gelezen (beschadigd of ongebruikelijk opgebouwd)",
        "too_complex": "bericht is te ingewikkeld opgebouwd om automatisch te lezen",
        "too_many_parts": "bericht is te ingewikkeld opgebouwd om automatisch te lezen",
        "header_block_too_large": "kopregels van het bericht te groot om automatisch te lezen",
        "header_too_large": "kopregels van het bericht te groot om automatisch te lezen",
        "too_many_headers": "kopregels van het bericht te groot om automatisch te lezen",
        "mime_header_too_large": "bericht is te ingewikkeld opgebouwd om automatisch te lezen",
        "too_many_mime_params": "bericht is te ingewikkeld opgebouwd om automatisch te lezen",
        "html_too_large": "tekst van het bericht (HTML) te groot om automatisch te lezen",
        "not_checked": "de mailbox is vanochtend niet (met succes) gecontroleerd",
        "waiting": "er wacht nog een bericht van Veilig Thuis dat niet automatisch kon worden afgehandeld",
        "bounce_of_receipt": "een ontvangstbevestiging aan Veilig Thuis is NIET aangekomen",
        "bounce_of_own_mail": "een bericht verstuurd vanuit deze mailbox kwam terug",
        "sender_not_listed": (
            "afzender op het domein van Veilig Thuis, maar niet in veilig_thuis.senders: controleer die lijst"
        ),
        "vt_related": "Sender, Reply-To of Return-Path noemt Veilig Thuis, de afzender niet",
        "code_word_unlisted_sender": "het codewoord Handle with Care, van een afzender die niet in de lijst staat",
        "auto_reply": "automatisch antwoord met het codewoord in de tekst",
        "report": "rapport (bijvoorbeeld leesbevestiging) over Veilig Thuis-post",
    },
    "en": {
        "not_authenticated": "sender not confirmed by the mail server (possibly forged)",
        "no_pupil": "no name with a birth date found",
        "ambiguous": "name or birth date not unambiguous",
        "no_code_word": "message from Veilig Thuis without the code word",
        "encrypted": "encrypted message",
        "secure_mail_notice": "message through a secure-mail portal",
        "attachment_only": "content only in an attachment",
        "bounce_of_notice": "a notice to the care coordinator did NOT arrive: inform them now",
        "incomplete": "message not yet completely received",
        "too_large": "message too large to read automatically",
        "signal_failed": "signal could not be completed (mail server)",
        "unreadable": "message could not be read (damaged or unusually built)",
        "too_complex": "message is built too intricately to read automatically",
        "too_many_parts": "message is built too intricately to read automatically",
        "header_block_too_large": "message headers too large to read automatically",
        "header_too_large": "message headers too large to read automatically",
        "too_many_headers": "message headers too large to read automatically",
        "mime_header_too_large": "message is built too intricately to read automatically",
        "too_many_mime_params": "message is built too intricately to read automatically",
        "html_too_large": "message text (HTML) too large to read automatically",
        "not_checked": "the mailbox was not checked successfully this morning",
        "waiting": "a message from Veilig Thuis is still waiting and could not be handled automatically",
        "bounce_of_receipt": "a receipt to Veilig Thuis did NOT arrive",
        "bounce_of_own_mail": "a message sent from this mailbox came back",
        "sender_not_listed": "sender at Veilig Thuis's domain but not in veilig_thuis.senders: check that list",
        "vt_related": "Sender, Reply-To or Return-Path names Veilig Thuis, the From does not",
        "code_word_unlisted_sender": "the code word Handle with Care, from a sender not in the list",
        "auto_reply": "automatic reply with the code word in its text",
        "report": "report (e.g. read receipt) about Veilig Thuis mail",
    },
}


#: What went wrong, in the reader's language: every `HwcError.cause` (and a few causes of the cycle's own)
#: has one sentence here, so no server's or sender's words ever reach a person's mail.
CAUSES: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "internal": "een interne fout in hwc-watcher",
        "config": "de configuratie van hwc-watcher klopt niet",
        "secret": "een wachtwoord- of sleutelbestand van hwc-watcher kan niet worden gelezen",
        "mailbox": "de mailserver (IMAP) is niet bereikbaar of gaf een onverwacht antwoord",
        "mailbox_login": "de mailserver (IMAP) weigert de aanmelding van hwc-watcher",
        "folder_changed": "een map van de HwC-mailbox is intussen veranderd",
        "timeout": "de mailserver antwoordt te traag",
        "delivery": "de verzendserver (SMTP) nam een bericht niet aan",
        "delivery_login": "de verzendserver (SMTP) weigert de aanmelding van hwc-watcher",
        "nobody": "geen enkele ontvanger van de melding nam hem aan",
        "tls": "de beveiligde verbinding met de mailserver lukt niet (certificaat of poort)",
        "token": "Microsoft of Google gaf geen toegangssleutel af",
        "webhook": "de webhook nam de melding niet aan",
        "pupil_list": "de leerlingenlijst kan niet worden gelezen of past niet bij de configuratie",
    },
    "en": {
        "internal": "an internal error in hwc-watcher",
        "config": "the hwc-watcher configuration is not right",
        "secret": "a password or key file of hwc-watcher cannot be read",
        "mailbox": "the mail server (IMAP) cannot be reached or answered unexpectedly",
        "mailbox_login": "the mail server (IMAP) refuses hwc-watcher's login",
        "folder_changed": "a folder of the HwC mailbox changed meanwhile",
        "timeout": "the mail server answers too slowly",
        "delivery": "the sending server (SMTP) did not accept a message",
        "delivery_login": "the sending server (SMTP) refuses hwc-watcher's login",
        "nobody": "no recipient of the notice accepted it",
        "tls": "the secure connection to the mail server fails (certificate or port)",
        "token": "Microsoft or Google issued no access token",
        "webhook": "the webhook did not accept the alert",
        "pupil_list": "the pupil list cannot be read or does not fit the configuration",
    },
}


def cause_text(cause: str, language: str) -> str:
    """One sentence for a cause code; an unknown code reads as an internal error, never as raw text."""
    table = CAUSES[language]
    return table.get(cause, table["internal"])


#: Folders by their role, as a person finds them in a mail client (never the name a server chose).
FOLDER_ROLES: Mapping[str, Mapping[str, str]] = {
    "nl": {"inbox": "Postvak IN", "junk": "de map met ongewenste e-mail (spam)",
           "sent": "de map met verzonden e-mail", "trash": "de prullenbak (Verwijderde items)"},
    "en": {"inbox": "the inbox", "junk": "the junk (spam) folder", "sent": "the sent folder",
           "trash": "the trash (Deleted items)"},
}

#: Lines one alert lists before "and N more": an alert stays small whatever the mailbox holds.
DIGEST_LINES = 20


def count_of(count: int, language: str) -> str:
    """ "1 bericht", "3 berichten": plurals written out."""
    if language == "nl":
        return f"{count} bericht" if count == 1 else f"{count} berichten"
    return f"{count} message" if count == 1 else f"{count} messages"


#: Values built by the composer itself from its own texts (never from a message), kept multi-line.
_BLOCKS = frozenset({"details", "keeping", "outcome", "proof"})


def clean(value: str) -> str:
    """Collapse control characters (CR, LF, NUL, …) to a space: no header or line injection."""
    return _CONTROL.sub(" ", value).strip()


def format_date(value: dt.date, language: str) -> str:
    """Dates like "7 maart 2011 (07-03-2011)": unmistakable for a Dutch reader."""
    if language == "nl":
        return f"{value.day} {NL_MONTHS[value.month - 1]} {value.year} ({value:%d-%m-%Y})"
    return f"{value:%d %B %Y} ({value:%d-%m-%Y})"


def format_moment(value: dt.datetime, language: str) -> str:
    """A local date and time for a receipt or alert."""
    if language == "nl":
        return f"{value.day} {NL_MONTHS[value.month - 1]} {value.year} om {value:%H:%M}"
    return f"{value:%d %B %Y} at {value:%H:%M}"


def new_message_id(kind: str, from_address: str) -> str:
    """Recognisable own IDs: `<hwc-notice.…@domain>` lets us find bounces and Sent copies."""
    domain = from_address.rsplit("@", 1)[-1]
    return f"<hwc-{kind}.{secrets.token_hex(16)}@{domain}>"


class Composer:
    """Builds every message the daemon sends, from one config."""

    def __init__(self, config: Config, ids: NoticeIds | None = None) -> None:
        self.config = config
        #: Our keyed Message-IDs; without a key (tests, a demo) they still have the exact form.
        self.ids = ids or NoticeIds(b"", config.smtp.from_address.rsplit("@", 1)[-1].lower())
        self.language = config.messages.language
        self.texts = dict(TEXTS[self.language])
        self.texts.update(config.messages.templates)

    def _text(self, key: str, **values: str) -> str:
        values.setdefault("school", self.config.messages.school_name)
        # Only our own multi-line blocks keep their line ends; every other value is one clean line.
        return Template(self.texts[key]).safe_substitute({k: v if k in _BLOCKS else clean(v)
                                                           for k, v in values.items()})

    def _base(self, kind: str, subject: str, to: Sequence[Person | str], now: dt.datetime, *,
              message_id: str | None = None) -> EmailMessage:
        smtp = self.config.smtp
        msg = EmailMessage()
        msg["From"] = Address(display_name=clean(smtp.from_name), addr_spec=smtp.from_address)
        msg["To"] = [
            Address(display_name=clean(p.name), addr_spec=p.email) if isinstance(p, Person) else Address(addr_spec=p)
            for p in to
        ]
        msg["Subject"] = clean(subject)
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = message_id or self.ids.new(kind, now=now)
        # RFC 3834: mark as automatic so well-behaved systems do not answer; ask Exchange not to. A notice
        # still allows Exchange's out-of-office reply and its non-delivery report: an absent or refused
        # coordinator is exactly what the backup must hear of (issue 24).
        msg["Auto-Submitted"] = "auto-generated" if kind != "receipt" else "auto-replied"
        msg["X-Auto-Response-Suppress"] = "DR, RN, NRN, AutoReply" if kind == "notice" else "All"
        return msg

    def notice(self, pupil: Pupil, decision: RouteDecision, to: Sequence[Person], now: dt.datetime, *,
               disappears: dt.datetime | None = None) -> EmailMessage:
        """One notice per pupil; the subject is exactly the configured one, never a name.

        With `disappears` (the recall will take it back), the notice says when, instead of asking
        the reader to delete it.
        """
        details = "".join(f"    {clean(k) + ':':<15}{clean(v)}\n" for k, v in decision.details.items())
        if decision.note == "not_found":
            details += self.texts["not_in_list"]
        elif decision.note == "ambiguous":
            details += self.texts["ambiguous_in_list"]
        msg = self._base("notice", self.config.messages.notice_subject, to, now)
        msg["Importance"] = "high"
        msg["Sensitivity"] = "Private"
        msg.set_content(
            self._text(
                "notice",
                coordinator=to[0].name or to[0].email,
                pupil_name=pupil.name,
                birth_date=format_date(pupil.birth_date, self.language),
                details=details,
                keeping=self._keeping(disappears, now),
            )
        )
        return msg

    def _keeping(self, disappears: dt.datetime | None, now: dt.datetime) -> str:
        if disappears is None:
            return self._text("keep_notice")
        local, today = disappears.astimezone(self.config.schedule.timezone), now.astimezone(
            self.config.schedule.timezone).date()
        if local.date() == today:
            moment = f"vandaag om {local:%H:%M}" if self.language == "nl" else f"today at {local:%H:%M}"
        else:
            moment = ("op " if self.language == "nl" else "on ") + format_moment(local, self.language)
        return self._text("recall_notice", moment=moment)

    def receipt(self, to: str, original_id: str | None, received: dt.datetime, now: dt.datetime) -> EmailMessage:
        """To VT: refers to their message, carries no pupil data."""
        subject = self.config.messages.receipt_subject or self.texts["receipt_subject"]
        msg = self._base("receipt", subject, [to], now)
        if original_id:
            msg["In-Reply-To"] = clean(original_id)
            msg["References"] = clean(original_id)
        local = received.astimezone(self.config.schedule.timezone)
        msg.set_content(self._text("receipt", received=format_moment(local, self.language)))
        return msg

    def mdn(self, to: str, original_id: str | None, now: dt.datetime) -> EmailMessage:
        """RFC 8098 disposition notification: automatic, processed; no original content."""
        msg = self._base("mdn", "Gelezen: Handle with Care" if self.language == "nl" else "Read: Handle with Care",
                         [to], now)
        msg.replace_header("Auto-Submitted", "auto-replied")
        if original_id:
            msg["In-Reply-To"] = clean(original_id)
            msg["References"] = clean(original_id)
        human = EmailMessage()
        human.set_content(
            "Uw bericht is automatisch verwerkt.\n" if self.language == "nl" else "Your message was processed.\n"
        )
        report = EmailMessage()
        lines = [
            "Reporting-UA: hwc-watcher",
            f"Final-Recipient: rfc822; {self.config.imap.username}",
        ]
        if original_id:
            lines.append(f"Original-Message-ID: {clean(original_id)}")
        lines.append("Disposition: automatic-action/MDN-sent-automatically; processed")
        report.set_content(("\r\n".join(lines) + "\r\n").encode("ascii", "replace"),
                           maintype="message", subtype="disposition-notification", cte="7bit")
        del report["MIME-Version"]
        msg.make_mixed()
        msg.set_type("multipart/report")
        msg.set_param("report-type", "disposition-notification")
        msg.attach(human)
        msg.attach(report)
        return msg

    def digest(self, items: Sequence[tuple[str, Mapping[str, str]]], to: Sequence[Person],
               now: dt.datetime) -> EmailMessage:
        """One alert for everything a cycle found: one line per cause, no message content."""
        problems = PROBLEMS[self.language]
        lines = []
        shown_items, more = list(items[:DIGEST_LINES]), len(items) - DIGEST_LINES
        if more > 0:
            shown_items.append(("item_more", {"count": str(more)}))
        for template, values in shown_items:
            shown = dict(values)
            if "problem" in shown:
                shown["problem"] = problems.get(shown["problem"], problems["unreadable"])
            if "cause" in shown:
                shown["cause"] = cause_text(shown["cause"], self.language)
            if "outcome" in shown:
                shown["outcome"] = self.texts[f"outcome_{shown['outcome']}"]
            if "folder" in shown:
                shown["folder"] = FOLDER_ROLES[self.language].get(shown["folder"], FOLDER_ROLES[self.language]["inbox"])
            if template == "item_strangers":
                shown["messages"] = count_of(int(shown.get("count", "1")), self.language)
            lines.append(self._text(template, **shown))
        subject = self.config.messages.alert_subject or self.texts["alert_subject"]
        msg = self._base("alert", subject, to, now)
        msg["Importance"] = "high"
        msg.set_content(Template(self.texts["alert_digest"]).safe_substitute(items="".join(lines)))
        return msg

    def drill_mail(self, message_id: str, now: dt.datetime) -> EmailMessage:
        """The drill's test mail from the HwC mailbox to itself, under the one id this drill waits for."""
        msg = self._base("drill", DRILL_MAIL_SUBJECT[self.language], [self.config.smtp.from_address], now,
                         message_id=message_id)
        msg.set_content(DRILL_MAIL_BODY[self.language])
        return msg

    def drill_report(self, passed: bool, to: Sequence[Person], now: dt.datetime, **values: str) -> EmailMessage:
        """The drill's one short mail to the contact: passed with the times, or the failed step and its fix."""
        msg = self._base("alert", DRILL_SUBJECTS[self.language][0 if passed else 1], to, now)
        if not passed:
            msg["Importance"] = "high"
        if "proof" in values:  # our own paragraph (drill_rules.PROOF), wrapped for a mail client
            values["proof"] = textwrap.fill(clean(values["proof"]), 78)
        msg.set_content(self._text("drill_ok" if passed else "drill_failed", **values))
        return msg

    def alert(self, key: str, to: Sequence[Person], now: dt.datetime, **values: str) -> EmailMessage:
        """A content-free instruction to the school's contact and backup."""
        subject = self.config.messages.alert_subject or self.texts["alert_subject"]
        msg = self._base("alert", subject, to, now)
        msg["Importance"] = "high"
        if "problem" in values:
            values["problem"] = PROBLEMS[self.language].get(values["problem"], values["problem"])
        msg.set_content(self._text(key, **values))
        return msg
