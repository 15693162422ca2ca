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
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from string import Template

from hwc_watcher.core.models import Person, Pupil, RouteDecision
from hwc_watcher.core.notice_id import NoticeIds, random_token
from hwc_watcher.core.settings import Config

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
            "\nVandaag:\n"
            "- Zoek de leerling op, het liefst vóór het eerste lesuur, en vraag wat hij\n"
            "  of zij vandaag nodig heeft: even een rustige plek, een toets op een ander\n"
            "  moment, herkansen als het niet lukte. Je hoeft niet te weten wat er thuis\n"
            "  is gebeurd; laat wel weten dat de leerling zijn of haar verhaal mag doen\n"
            "  als hij of zij dat wil.\n"
            "- Spreek samen met de leerling af wie op school het mag weten, wie niet, en\n"
            "  wie het hun vertelt.\n"
            "- Krijg je in het gesprek zorgen over de thuissituatie, volg dan de meldcode\n"
            "  huiselijk geweld en kindermishandeling.\n\n"
            "hwc-watcher stuurt Veilig Thuis de ontvangstbevestiging; je hoeft hen niets\n"
            "te sturen. Beantwoord deze e-mail niet en stuur hem niet door: een\n"
            "doorgestuurde kopie blijft in je verzonden e-mail staan. Wat een collega\n"
            "moet weten, vertel je mondeling.\n\n"
            "${keeping}"
            "Met vriendelijke groet,\n"
            "$school\n"
            "(automatisch verstuurd vanuit de Handle with Care-mailbox)\n"
        ),
        "keep_notice": (
            "Bewaar deze e-mail niet: verwijder hem nadat je de leerling hebt gesproken,\n"
            "ook uit 'Verwijderde items'. Noteer het signaal nergens, ook niet in een\n"
            "dossier of in het leerlingvolgsysteem. Zo is het afgesproken in het\n"
            "Handle with Care-convenant.\n\n"
        ),
        "recall_notice": (
            "Deze e-mail verdwijnt $moment vanzelf uit je mailbox, ook uit\n"
            "'Verwijderde items'. Bewaar hem niet op een andere plek en noteer het\n"
            "signaal nergens, ook niet in een dossier of in het leerlingvolgsysteem.\n"
            "Zo is het afgesproken in het Handle with Care-convenant.\n\n"
        ),
        "not_in_list": (
            "    Let op:        deze leerling staat niet in de leerlingenlijst. Zit\n"
            "                   de leerling op deze school, vertel het dan mondeling\n"
            "                   aan de zorgcoördinator van de leerling (stuur deze\n"
            "                   e-mail niet door). Zit de leerling niet op deze\n"
            "                   school, bel dan Veilig Thuis: zij denken dat de\n"
            "                   school het signaal heeft doorgegeven.\n"
        ),
        "ambiguous_in_list": (
            "    Let op:        deze leerling is niet met zekerheid gevonden in de\n"
            "                   leerlingenlijst. Ga na wie het is en vertel het\n"
            "                   mondeling aan de zorgcoördinator van de leerling\n"
            "                   (stuur deze e-mail niet door). Lukt dat niet, bel\n"
            "                   dan Veilig Thuis.\n"
        ),
        "receipt_subject": "Ontvangstbevestiging Handle with Care",
        "receipt": (
            "Geachte medewerker van Veilig Thuis,\n\n"
            "Wij bevestigen de ontvangst van uw Handle with Care-bericht\n"
            "van $received.\n"
            "Het signaal is doorgegeven aan de zorgcoördinator; uw bericht wordt nu\n"
            "uit onze mailbox verwijderd.\n\n"
            "Met vriendelijke groet,\n"
            "$school\n\n"
            "Dit is een automatisch bericht.\n"
        ),
        "alert_subject": "Actie nodig: Handle with Care-mailbox",
        "subject_action": "Graag nakijken: Handle with Care-mailbox",
        "subject_info": "Ter informatie: Handle with Care-mailbox",
        "subject_resolved": "Opgelost: de Handle with Care-mailbox werkt weer",
        "alert_deadline": (
            "Het is $deadline en de Handle with Care-mailbox is niet helemaal verwerkt: $problem.\n"
            "$detail\n\n"
            "Wat je doet: $action\n\n"
            "Deze melding bevat bewust geen gegevens van leerlingen.\n"
        ),
        "detail_not_checked": (
            "Sinds het begin van de ochtend is geen controle gelukt; misschien draait hwc-watcher niet."
        ),
        "detail_failing": "Sinds $since lukt het niet: $cause.",
        "detail_waiting": "De HwC-mailbox bevat nog $messages om met de hand af te handelen.",
        "alert_failure": (
            "hwc-watcher kan de Handle with Care-mailbox niet verwerken: $error.\n\nWat je doet: $action\n\n$technical"
        ),
        "alert_recovered": (
            "hwc-watcher werkt weer: de Handle with Care-mailbox is om $moment gecontroleerd en er\n"
            "wacht niets meer. Je hoeft niets meer te doen; zelf in de mailbox kijken is niet meer nodig.\n"
        ),
        "alert_digest": (
            "Bericht van hwc-watcher over de Handle with Care-mailbox.\n\n"
            "${items}"
            "Deze melding bevat bewust geen gegevens uit de berichten.\n"
        ),
        "action_line": "Wat je doet: $action\n",
        "stays_one": (
            "Het bericht blijft in de HwC-mailbox staan (in de prullenbak tot het eind van de schooldag). "
            "Verwijder het als je klaar bent, ook uit de prullenbak."
        ),
        "stays_many": (
            "De berichten blijven in de HwC-mailbox staan (in de prullenbak tot het eind van de schooldag). "
            "Verwijder ze als je klaar bent, ook uit de prullenbak."
        ),
        "find_one": "Je vindt het aan de map en de tijd hierboven.",
        "find_many": "Je vindt ze aan de map en de tijd hierboven.",
        "flag_one": "Het heeft een vlag.",
        "flag_many": "Ze hebben een vlag.",
        "strangers_stay": "hwc-watcher laat dit staan; verwijder het als je het hebt bekeken.",
        "technical": (
            "Technische gegevens (voor de ICT-beheerder):\n"
            "    De volledige foutmelding staat in het logboek van hwc-watcher\n"
            "    (journalctl -u hwc-watcher); `hwc-watcher check` zegt wat er mis is.\n"
        ),
        "item_waiting": "- Een bericht in $folder (ontvangen $received): $problem.\n",
        "item_bounce": "- Een bericht in $folder (ontvangen $received): $problem. Geweigerd adres: $refused.\n",
        "item_strangers": "- $messages met het codewoord Handle with Care van een afzender buiten Veilig Thuis.\n",
        "item_more": "- en nog $more (zie de HwC-mailbox).\n",
        "unknown_address": "een adres dat niet in de instellingen staat",
        "route_default": "de standaardroute",
        "route_named": "route $route",
        "item_delivery": "- De mailserver weigerde een melding aan $failed ($route); $outcome\n",
        "outcome_backup": "de achterwacht heeft hem wel gekregen. Laat de ICT-beheerder dit adres nakijken.",
        "item_away": (
            "- $coordinator ($route) antwoordde om $moment automatisch: afwezig. De achterwacht heeft de\n"
            "  melding nu ook gekregen, en krijgt vandaag ook de volgende meldingen voor deze collega.\n"
        ),
        "item_away_late": (
            "- $coordinator ($route) antwoordde om $moment automatisch: afwezig. Dat gaat over een melding\n"
            "  van $sent die misschien niet gelezen is. De naam staat niet meer in de HwC-mailbox: vraag het\n"
            "  na bij de collega of de achterwacht, of bel Veilig Thuis.\n"
        ),
        "outcome_nobody": (
            "niemand heeft hem gekregen. Open het signaal in de HwC-mailbox en vertel het de\n"
            "  zorgcoördinator vandaag mondeling; laat de ICT-beheerder het adres nakijken."
        ),
        "item_test_bounce": (
            "- Het testbericht van hwc-watcher aan $refused kwam terug: dat adres bestaat niet of weigert\n"
            "  mail. De ICT-beheerder moet het adres in de instellingen aanpassen. Het teruggekomen bericht\n"
            "  wordt verwijderd.\n"
        ),
        "item_signal_failed": (
            "- Een signaal kon niet volledig worden verwerkt: $cause. Laat de ICT-beheerder de oorzaak\n  nakijken.\n"
        ),
        "item_pupil_list": (
            "- De leerlingenlijst ($file) kan niet worden gebruikt. Tot dit is opgelost gaan alle\n"
            "  meldingen naar de zorgcoördinator van de standaardroute.\n"
        ),
        "item_cleanup": (
            "- Na het verwerken vond hwc-watcher nog $messages terug in de HwC-mailbox: het verwijderen is\n"
            "  niet helemaal gelukt.\n"
        ),
        "drill_ok": (
            "Oefening geslaagd: ontvangen $received, afzender: $trust, verwijderd $deleted.\n\n"
            "hwc-watcher stuurde om $sent een testbericht van de Handle with Care-mailbox aan zichzelf. Het\n"
            "kwam aan en is overal verwijderd.\n$proof\n\nJe hoeft niets te doen.\n"
        ),
        "drill_failed": (
            "Oefening MISLUKT bij stap '$step': $error.\n\n"
            "hwc-watcher stuurde om $sent een testbericht van de Handle with Care-mailbox aan zichzelf, om de\n"
            "hele keten te controleren. Tot dit is opgelost komt een signaal van Veilig Thuis misschien niet\n"
            "vanzelf bij de zorgcoördinator.\n\n"
            "Wat je doet: stuur deze e-mail door naar de ICT-beheerder en kijk tot het is opgelost elke\n"
            "ochtend vóór het eerste lesuur zelf in de HwC-mailbox.\n\n"
            "Technische gegevens (voor de ICT-beheerder):\n"
            "    Stappen: $steps\n"
            "    Oplossing: $fix\n"
            "    Meer staat in het logboek; `hwc-watcher drill` herhaalt de oefening.\n"
        ),
        "alert_recall": (
            "hwc-watcher kon de meldingen niet (helemaal) terughalen uit de mailbox van $mailbox, bij het\n"
            "$step: $error.\n\n"
            "Het probeert het om $retry opnieuw; tot het gelukt is, blijven de meldingen in die mailbox staan.\n\n"
            "Wat je doet: vraag de zorgcoördinator de melding zelf te verwijderen, ook uit 'Verwijderde\n"
            "items', en stuur deze e-mail door naar de ICT-beheerder.\n\n"
            "$technical\n"
            "Deze melding bevat bewust geen gegevens van leerlingen.\n"
        ),
        "alert_left_alone": (
            "De HwC-mailbox bevat $messages van buiten Veilig Thuis (sinds $oldest).\n"
            "Dat is geen signaal: hwc-watcher geeft er niets van door en laat alles staan.\n\n"
            "Wat je doet: kijk alles na en verwijder het, ook uit de prullenbak. Het convenant vraagt een\n"
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
            "\nToday:\n"
            "- Seek the pupil out, preferably before the first lesson, and ask what they\n"
            "  need today: a quiet place for a while, a test at another time, a resit if\n"
            "  it did not go well. You do not need to know what happened at home; do let\n"
            "  the pupil know they may tell their story if they want to.\n"
            "- Agree with the pupil who at school may know, who may not, and who tells\n"
            "  them.\n"
            "- If the conversation gives you concerns about the situation at home,\n"
            "  follow the reporting code for domestic violence and child abuse\n"
            "  (meldcode).\n\n"
            "hwc-watcher sends Veilig Thuis the receipt; you need not send them anything.\n"
            "Do not reply to this e-mail or forward it: a forwarded copy stays in your\n"
            "sent items. Tell a colleague what they need to know in person.\n\n"
            "${keeping}"
            "Kind regards,\n"
            "$school\n"
            "(sent automatically from the Handle with Care mailbox)\n"
        ),
        "keep_notice": (
            "Do not keep this e-mail: delete it after you have spoken to the pupil, also\n"
            "from 'Deleted items'. Do not record the signal anywhere, not in a file nor\n"
            "in the pupil tracking system. That is what the Handle with Care agreement\n"
            "says.\n\n"
        ),
        "recall_notice": (
            "This e-mail disappears from your mailbox $moment, also from\n"
            "'Deleted items'. Do not keep it anywhere else and do not record the\n"
            "signal anywhere, not in a file nor in the pupil tracking system. That is\n"
            "what the Handle with Care agreement says.\n\n"
        ),
        "not_in_list": (
            "    Note:          this pupil is not in the pupil list. If the pupil is at\n"
            "                   this school, tell the pupil's care coordinator in\n"
            "                   person (do not forward this e-mail). If the pupil is\n"
            "                   not at this school, call Veilig Thuis: they believe\n"
            "                   the school has passed the signal on.\n"
        ),
        "ambiguous_in_list": (
            "    Note:          this pupil was not found with certainty in the pupil\n"
            "                   list. Find out who it is and tell the pupil's care\n"
            "                   coordinator in person (do not forward this e-mail).\n"
            "                   If you cannot, call Veilig Thuis.\n"
        ),
        "receipt_subject": "Receipt: Handle with Care",
        "receipt": (
            "Dear colleague at Veilig Thuis,\n\n"
            "We confirm receipt of your Handle with Care message of $received.\n"
            "The signal has been passed on to the care coordinator; your message is\n"
            "now being deleted from our mailbox.\n\n"
            "Kind regards,\n$school\n\nThis is an automatic message.\n"
        ),
        "alert_subject": "Action needed: Handle with Care mailbox",
        "subject_action": "Please check: Handle with Care mailbox",
        "subject_info": "For your information: Handle with Care mailbox",
        "subject_resolved": "Resolved: the Handle with Care mailbox is working again",
        "alert_deadline": (
            "It is $deadline and the Handle with Care mailbox has not been fully processed: $problem.\n"
            "$detail\n\n"
            "What you do: $action\n\n"
            "This alert deliberately contains no pupil data.\n"
        ),
        "detail_not_checked": "No check has succeeded since the morning began; perhaps hwc-watcher is not running.",
        "detail_failing": "Since $since it has been failing: $cause.",
        "detail_waiting": "The HwC mailbox still holds $messages to be handled by hand.",
        "alert_failure": (
            "hwc-watcher cannot process the Handle with Care mailbox: $error.\n\nWhat you do: $action\n\n$technical"
        ),
        "alert_recovered": (
            "hwc-watcher is working again: the Handle with Care mailbox was checked at $moment and\n"
            "nothing is waiting. You need not do anything more; checking the mailbox yourself is no\n"
            "longer needed.\n"
        ),
        "alert_digest": (
            "A message from hwc-watcher about the Handle with Care mailbox.\n\n"
            "${items}"
            "This alert deliberately contains nothing from the messages.\n"
        ),
        "action_line": "What you do: $action\n",
        "stays_one": (
            "The message stays in the HwC mailbox (in the trash until the end of the school day). Delete it "
            "when you are done, also from the trash."
        ),
        "stays_many": (
            "The messages stay in the HwC mailbox (in the trash until the end of the school day). Delete them "
            "when you are done, also from the trash."
        ),
        "find_one": "You find it by the folder and time above.",
        "find_many": "You find them by the folder and time above.",
        "flag_one": "It is flagged.",
        "flag_many": "They are flagged.",
        "strangers_stay": "hwc-watcher leaves it where it is; delete it once you have looked at it.",
        "technical": (
            "Technical details (for the ICT admin):\n"
            "    The full error is in the hwc-watcher log (journalctl -u hwc-watcher);\n"
            "    `hwc-watcher check` says what is wrong.\n"
        ),
        "item_waiting": "- A message in $folder (received $received): $problem.\n",
        "item_bounce": "- A message in $folder (received $received): $problem. Refused address: $refused.\n",
        "item_strangers": "- $messages with the code word Handle with Care from a sender outside Veilig Thuis.\n",
        "item_more": "- and $more (see the HwC mailbox).\n",
        "unknown_address": "an address that is not in the settings",
        "route_default": "the default route",
        "route_named": "route $route",
        "item_delivery": "- The mail server refused a notice to $failed ($route); $outcome\n",
        "outcome_backup": "the backup did get it. Ask the ICT admin to check this address.",
        "item_away": (
            "- $coordinator ($route) answered automatically at $moment: away. The backup now has the\n"
            "  notice too, and gets today's further notices for this colleague as well.\n"
        ),
        "item_away_late": (
            "- $coordinator ($route) answered automatically at $moment: away. That concerns a notice of\n"
            "  $sent that may be unread. The name is no longer in the HwC mailbox: ask the colleague or the\n"
            "  backup, or call Veilig Thuis.\n"
        ),
        "outcome_nobody": (
            "nobody got it. Open the signal in the HwC mailbox and tell the care coordinator\n"
            "  in person today; ask the ICT admin to check the address."
        ),
        "item_test_bounce": (
            "- The hwc-watcher test mail to $refused came back: that address does not exist or refuses\n"
            "  mail. The ICT admin must correct the address in the settings. The returned message is\n"
            "  deleted.\n"
        ),
        "item_signal_failed": (
            "- A signal could not be completed: $cause. Ask the ICT admin to look into the cause.\n"
        ),
        "item_pupil_list": (
            "- The pupil list ($file) cannot be used. Until this is fixed every notice goes to the\n"
            "  care coordinator of the default route.\n"
        ),
        "item_cleanup": (
            "- After processing, hwc-watcher still found $messages in the HwC mailbox: deleting did not\n"
            "  fully succeed.\n"
        ),
        "drill_ok": (
            "Drill passed: received $received, sender: $trust, deleted $deleted.\n\n"
            "At $sent hwc-watcher sent a test mail from the Handle with Care mailbox to itself. It arrived\n"
            "and was deleted everywhere.\n$proof\n\nYou need not do anything.\n"
        ),
        "drill_failed": (
            "Drill FAILED at step '$step': $error.\n\n"
            "At $sent hwc-watcher sent a test mail from the Handle with Care mailbox to itself, to check the\n"
            "whole chain. Until this is fixed a signal from Veilig Thuis may not reach the care coordinator\n"
            "by itself.\n\n"
            "What you do: pass this e-mail on to the ICT admin and, until it is fixed, look in the HwC\n"
            "mailbox yourself every morning before the first lesson.\n\n"
            "Technical details (for the ICT admin):\n"
            "    Steps: $steps\n"
            "    Fix: $fix\n"
            "    More is in the log; `hwc-watcher drill` repeats the drill.\n"
        ),
        "alert_recall": (
            "hwc-watcher could not (completely) take back the notices from the mailbox of $mailbox, while\n"
            "$step: $error.\n\n"
            "It tries again at $retry; until it succeeds, the notices stay in that mailbox.\n\n"
            "What you do: ask the care coordinator to delete the notice, also from 'Deleted items', and\n"
            "pass this e-mail on to the ICT admin.\n\n"
            "$technical\n"
            "This alert deliberately contains no pupil data.\n"
        ),
        "alert_left_alone": (
            "The HwC mailbox holds $messages from outside Veilig Thuis (since $oldest).\n"
            "That is no signal: hwc-watcher passes nothing of it on and leaves it all where it is.\n\n"
            "What you do: look at it all and delete it, also from the trash. The agreement asks for an\n"
            "empty mailbox.\n"
        ),
    },
}

#: Subjects of the drill report: (passed, failed).
DRILL_SUBJECTS: Mapping[str, tuple[str, str]] = {
    "nl": (
        "Ter informatie: oefening Handle with Care-mailbox geslaagd",
        "Actie nodig: oefening Handle with Care-mailbox mislukt",
    ),
    "en": (
        "For your information: Handle with Care mailbox drill passed",
        "Action needed: Handle with Care mailbox drill failed",
    ),
}

#: What failed in a drill, per `drill_rules` problem code, for the person who reads the report (the fix, with
#: its config keys, goes under the technical heading).
DRILL_CAUSES: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "imap": "de HwC-mailbox kon niet worden geopend",
        "smtp": "het versturen lukte niet",
        "smtp_login": "de verzendserver weigerde de aanmelding van hwc-watcher",
        "smtp_refused": "de verzendserver weigerde mail aan de HwC-mailbox zelf",
        "smtp_sender": "de verzendserver staat niet toe dat hwc-watcher verstuurt vanaf de HwC-mailbox",
        "not_arrived": "het testbericht kwam niet op tijd aan",
        "stopped": "hwc-watcher werd tijdens de oefening gestopt",
        "gone": "het testbericht verdween voordat het gelezen kon worden",
        "wrong_id": "een ander bericht deed zich voor als het testbericht",
        "not_from_us": "het testbericht kwam aan met een andere afzender",
        "check_off": "de controle van de afzender staat uit, zodat ook een vervalst signaal zou worden doorgegeven",
        "no_header": "de mailserver van de school bevestigde de afzender niet",
        "untrusted_id": "de mailserver van de school bevestigde de afzender niet",
        "unreadable": "de mailserver van de school bevestigde de afzender niet",
        "not_pass": "de mailserver van de school bevestigde de afzender niet",
        "internal": "een interne fout in hwc-watcher",
        "left": "het testbericht kon niet overal worden verwijderd",
    },
    "en": {
        "imap": "the HwC mailbox could not be opened",
        "smtp": "sending failed",
        "smtp_login": "the sending server refused hwc-watcher's login",
        "smtp_refused": "the sending server refused mail to the HwC mailbox itself",
        "smtp_sender": "the sending server does not let hwc-watcher send from the HwC mailbox",
        "not_arrived": "the test mail did not arrive in time",
        "stopped": "hwc-watcher was stopped during the drill",
        "gone": "the test mail vanished before it could be read",
        "wrong_id": "another message posed as the test mail",
        "not_from_us": "the test mail arrived with another sender",
        "check_off": "the sender check is off, so a forged signal would be passed on too",
        "no_header": "the school's mail server did not vouch for the sender",
        "untrusted_id": "the school's mail server did not vouch for the sender",
        "unreadable": "the school's mail server did not vouch for the sender",
        "not_pass": "the school's mail server did not vouch for the sender",
        "internal": "an internal error in hwc-watcher",
        "left": "the test mail could not be deleted everywhere",
    },
}

#: `check --send-test`'s mail to each configured person: marked TEST, says why they get it, no pupil data.
TEST_MAIL_SUBJECT: Mapping[str, str] = {"nl": "TEST – Handle with Care-koppeling", "en": "TEST – Handle with Care link"}
TEST_MAIL_BODY: Mapping[str, str] = {
    "nl": (
        "Dit is een test van de Handle with Care-koppeling; je hoeft niets te doen.\n\n"
        "De school controleert of berichten van de Handle with Care-mailbox je bereiken. Je staat in de "
        "instellingen als {roles}. Dit bericht bevat geen gegevens over leerlingen.\n\n"
        "Met vriendelijke groet,\n{school}\n(de koppeling van de Handle with Care-mailbox)\n"
    ),
    "en": (
        "This is a test of the Handle with Care link; you need not do anything.\n\n"
        "The school is checking that messages from the Handle with Care mailbox reach you. The settings "
        "name you as {roles}. This message contains no data about pupils.\n\n"
        "Kind regards,\n{school}\n(the link for the Handle with Care mailbox)\n"
    ),
}

#: The drill mail itself: marked TEST, no code word, no pupil data.
DRILL_MAIL_SUBJECT: Mapping[str, str] = {"nl": "TEST – oefening hwc-watcher", "en": "TEST – hwc-watcher drill"}
DRILL_MAIL_BODY: Mapping[str, str] = {
    "nl": (
        "Dit is een oefening van hwc-watcher: de koppeling stuurt zichzelf een bericht om te controleren "
        "dat mail aankomt en dat de mailserver de afzender bevestigt. Het wordt meteen automatisch "
        "verwijderd. Dit bericht bevat geen gegevens over leerlingen.\n"
    ),
    "en": (
        "This is an hwc-watcher drill: the link sends itself a message to check that mail arrives and that "
        "the mail server vouches for the sender. It is deleted automatically at once. This message "
        "contains no data about pupils.\n"
    ),
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
        "bounce_of_notice": "een melding aan een zorgcoördinator is NIET aangekomen",
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
        "waiting": "er wacht nog post van Veilig Thuis die niet automatisch kon worden afgehandeld",
        "bounce_of_receipt": "een ontvangstbevestiging aan Veilig Thuis is NIET aangekomen",
        "bounce_of_own_mail": "een bericht verstuurd vanuit deze mailbox kwam terug",
        "sender_not_listed": (
            "van een adres bij Veilig Thuis dat niet in de lijst van afzenders staat (laat de ICT-beheerder die "
            "lijst nakijken)"
        ),
        "vt_related": "noemt Veilig Thuis ergens in de kop van het bericht, maar komt niet van Veilig Thuis",
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
        "bounce_of_notice": "a notice to a care coordinator did NOT arrive",
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
        "waiting": "mail from Veilig Thuis that could not be handled automatically is still waiting",
        "bounce_of_receipt": "a receipt to Veilig Thuis did NOT arrive",
        "bounce_of_own_mail": "a message sent from this mailbox came back",
        "sender_not_listed": (
            "from an address at Veilig Thuis that is not in the list of senders (ask the ICT admin to check that list)"
        ),
        "vt_related": "names Veilig Thuis somewhere in its header, but does not come from Veilig Thuis",
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
        "config": "de instellingen van hwc-watcher kloppen niet",
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
        "pupil_list": "de leerlingenlijst kan niet worden gelezen of past niet bij de instellingen",
        "recall_left": "na het verwijderen stonden er nog meldingen",
        "unknown": "er ging iets mis bij het verwerken; de oorzaak staat in het logboek",
    },
    "en": {
        "internal": "an internal error in hwc-watcher",
        "config": "the hwc-watcher settings are not right",
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
        "pupil_list": "the pupil list cannot be read or does not fit the settings",
        "recall_left": "notices were still there after deleting",
        "unknown": "something went wrong while processing; the cause is in the log",
    },
}


def cause_text(cause: str, language: str) -> str:
    """One sentence for a cause code; an unknown code reads as an internal error, never as raw text."""
    table = CAUSES[language]
    return table.get(cause, table["internal"])


#: The one table of what to do: per kind of cause, the heading a digest groups its lines under and the action the
#: reader takes. Every alert line and alert mail takes its action from here (`action_kind` says which applies).
ACTIONS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "nl": {
        "verify": (
            "Mogelijk vervalst of van een onbekend adres",
            "bel eerst Veilig Thuis om na te gaan of zij dit stuurden; geef pas daarna iets door. Stuur\n"
            "de afzender geen ontvangstbevestiging.",
        ),
        "by_hand": (
            "Signaal niet automatisch verwerkt",
            "open het zelf en handel het af volgens het werkproces: geef naam en geboortedatum mondeling\n"
            "door aan de zorgcoördinator, stuur Veilig Thuis een ontvangstbevestiging en verwijder het\n"
            "bericht daarna overal, ook uit de prullenbak.",
        ),
        "bounce_notice": (
            "Melding niet aangekomen",
            "vertel het de zorgcoördinator vandaag mondeling: open daarvoor het signaal in de HwC-mailbox.\n"
            "Laat de ICT-beheerder het adres nakijken.",
        ),
        "bounce_receipt": (
            "Ontvangstbevestiging niet aangekomen",
            "bel Veilig Thuis en laat weten dat het signaal is ontvangen. Laat de ICT-beheerder het adres\nnakijken.",
        ),
        "cleanup": (
            "Niet alles verwijderd",
            "zoek ze op in alle mappen van de HwC-mailbox en verwijder ze met de hand, ook uit de\nprullenbak.",
        ),
        "admin": (
            "Voor de ICT-beheerder",
            "stuur deze e-mail door naar de ICT-beheerder. Signalen worden intussen gewoon doorgegeven.",
        ),
        "not_ours": (
            "Geen signaal",
            "dit is geen signaal van Veilig Thuis: geef niets door en stuur geen ontvangstbevestiging.\n"
            "Twijfel je, bel dan eerst Veilig Thuis.",
        ),
        "check_now": (
            "Mailbox niet gecontroleerd",
            "kijk nu zelf in de HwC-mailbox. Staat er een signaal, handel het dan af volgens het\n"
            "werkproces: geef naam en geboortedatum vóór het eerste lesuur mondeling door aan de\n"
            "zorgcoördinator,\n"
            "stuur Veilig Thuis een ontvangstbevestiging en verwijder het bericht overal. Stuur deze\n"
            "melding daarna door naar de ICT-beheerder.",
        ),
        "waiting": (
            "Berichten wachten",
            "open de HwC-mailbox nu en handel de wachtende berichten vóór het eerste lesuur af zoals\n"
            "de melding erover zegt.",
        ),
        "away": (
            "Zorgcoördinator afwezig",
            "de achterwacht heeft de melding en zoekt de leerling vandaag op. Spreek af wie dat doet als\n"
            "de achterwacht er ook niet is.",
        ),
        "away_late": (
            "Melding misschien niet gelezen",
            "vraag de collega of de achterwacht vandaag of de melding gelezen is; is dat niet zo en weet\n"
            "niemand om wie het gaat, bel dan Veilig Thuis.",
        ),
        "broken": (
            "Mailbox niet verwerkt",
            "stuur deze e-mail door naar de ICT-beheerder. Kijk tot het is opgelost elke ochtend vóór\n"
            "het eerste lesuur zelf in de HwC-mailbox en handel een signaal af volgens het werkproces.",
        ),
    },
    "en": {
        "verify": (
            "Possibly forged or from an unknown address",
            "first call Veilig Thuis to find out whether they sent it; only then pass anything on. Send\n"
            "the sender no receipt.",
        ),
        "by_hand": (
            "Signal not handled automatically",
            "open it yourself and handle it as the work process says: tell the care coordinator name and\n"
            "date of birth in person, send Veilig Thuis a receipt, and then delete the message\n"
            "everywhere, also from the trash.",
        ),
        "bounce_notice": (
            "Notice did not arrive",
            "tell the care coordinator in person today: open the signal in the HwC mailbox for that.\n"
            "Ask the ICT admin to check the address.",
        ),
        "bounce_receipt": (
            "Receipt did not arrive",
            "call Veilig Thuis and tell them the signal was received. Ask the ICT admin to check the\naddress.",
        ),
        "cleanup": (
            "Not everything was deleted",
            "find them in every folder of the HwC mailbox and delete them by hand, also from the trash.",
        ),
        "admin": (
            "For the ICT admin",
            "pass this e-mail on to the ICT admin. Signals are still passed on meanwhile.",
        ),
        "not_ours": (
            "No signal",
            "this is no signal from Veilig Thuis: pass nothing on and send no receipt. If in doubt, call\n"
            "Veilig Thuis first.",
        ),
        "check_now": (
            "Mailbox not checked",
            "look in the HwC mailbox yourself now. If a signal is there, handle it as the work process\n"
            "says: tell the care coordinator name and date of birth in person before the first lesson, send\n"
            "Veilig Thuis a receipt and delete the message everywhere. Then pass this alert on to the\n"
            "ICT admin.",
        ),
        "waiting": (
            "Messages waiting",
            "open the HwC mailbox now and handle the waiting messages before the first lesson, as the\n"
            "alert about them says.",
        ),
        "away": (
            "Care coordinator away",
            "the backup has the notice and seeks the pupil out today. Agree who does so if the backup is\naway too.",
        ),
        "away_late": (
            "Notice possibly unread",
            "ask the colleague or the backup today whether the notice was read; if not, and nobody knows\n"
            "whom it is about, call Veilig Thuis.",
        ),
        "broken": (
            "Mailbox not processed",
            "pass this e-mail on to the ICT admin. Until it is fixed, look in the HwC mailbox yourself\n"
            "every morning before the first lesson and handle a signal as the work process says.",
        ),
    },
}

#: Which action each code calls for: reason codes of waiting messages, the 08:15 causes and the digest's line
#: templates (a `HwcError.cause` is always "admin"). A code not listed is a message to handle by hand.
_ACTION_OF: Mapping[str, str] = {
    "not_authenticated": "verify", "sender_not_listed": "verify", "vt_related": "verify",
    "code_word_unlisted_sender": "not_ours", "auto_reply": "not_ours", "report": "not_ours",
    "bounce_of_notice": "bounce_notice", "bounce_of_receipt": "bounce_receipt", "bounce_of_own_mail": "admin",
    "not_checked": "check_now", "waiting": "waiting",
    "item_strangers": "not_ours", "item_test_bounce": "admin", "item_pupil_list": "admin",
    "item_cleanup": "cleanup", "item_signal_failed": "by_hand", "item_away": "away", "item_away_late": "away_late",
}  # fmt: skip

#: The order of a digest's groups: what may be a signal first, what only informs last.
_GROUP_ORDER = (
    "verify",
    "bounce_notice",
    "away_late",
    "by_hand",
    "away",
    "bounce_receipt",
    "cleanup",
    "admin",
    "not_ours",
)
#: Lines about a message that stays in the HwC mailbox until a person handles it (a refused notice's line is
#: about the signal its item_signal_failed line already names).
_STAYING = frozenset({"item_waiting", "item_bounce", "item_signal_failed"})
#: How urgent an alert is, by the most urgent group in it: subject and Importance follow.
_URGENT = frozenset(
    {"verify", "by_hand", "bounce_notice", "bounce_receipt", "check_now", "waiting", "broken", "away", "away_late"}
)
_ACTION = frozenset({"cleanup", "admin"})


def action_kind(template: str, values: Mapping[str, str]) -> str:
    """The kind of action one digest line calls for (a key of `ACTIONS`)."""
    if template == "item_delivery":
        return "by_hand" if values.get("outcome") == "nobody" else "admin"
    if "problem" in values:
        return _ACTION_OF.get(values["problem"], "by_hand")
    return _ACTION_OF.get(template, "admin")


def action_text(kind: str, language: str) -> str:
    """The action for one kind, as a sentence."""
    return ACTIONS[language][kind][1]


#: How each alert mail reads as to urgency: "urgent" (high importance, "Actie nodig"), "action" ("Graag
#: nakijken"), "info" ("Ter informatie"), "resolved" ("Opgelost"); the digest takes its urgency from its groups
#: and the drill report has its own subjects (DRILL_SUBJECTS).
ALERT_KINDS: Mapping[str, str] = {
    "alert_deadline": "urgent", "alert_failure": "urgent", "alert_recall": "action", "alert_recovered": "resolved",
    "alert_left_alone": "info",
}  # fmt: skip

#: The recall's steps, as the alert names them ("bij het aanmelden" / "while logging in").
RECALL_STEPS: Mapping[str, Mapping[str, str]] = {
    "nl": {"login": "aanmelden", "search": "zoeken", "delete": "verwijderen", "verify": "nakijken"},
    "en": {"login": "logging in", "search": "searching", "delete": "deleting", "verify": "checking"},
}


#: Folders by their role, as a person finds them in a mail client (never the name a server chose).
FOLDER_ROLES: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "inbox": "Postvak IN",
        "junk": "de map met ongewenste e-mail (spam)",
        "sent": "de map met verzonden e-mail",
        "trash": "de prullenbak (Verwijderde items)",
    },
    "en": {
        "inbox": "the inbox",
        "junk": "the junk (spam) folder",
        "sent": "the sent folder",
        "trash": "the trash (Deleted items)",
    },
}

#: Lines one alert lists before "and N more": an alert stays small whatever the mailbox holds.
DIGEST_LINES = 20


def count_of(count: int, language: str) -> str:
    """ "1 bericht", "3 berichten": plurals written out."""
    if language == "nl":
        return f"{count} bericht" if count == 1 else f"{count} berichten"
    return f"{count} message" if count == 1 else f"{count} messages"


def more_of(count: int, language: str) -> str:
    """ "1 andere melding", "3 andere meldingen": the digest's "and N more"."""
    if language == "nl":
        return f"{count} andere melding" if count == 1 else f"{count} andere meldingen"
    return f"{count} more"


#: Values built by the composer itself from its own texts (never from a message), kept multi-line.
_BLOCKS = frozenset({"details", "keeping", "outcome", "proof", "action", "technical", "detail"})


#: Alerts are filled to this width after their values are in (RFC 5322's advice for a line).
WIDTH = 78


def fill(text: str, width: int = WIDTH, indent: str = "") -> str:
    """One paragraph refilled (its own line ends dropped); a bullet's next lines hang under its text."""
    return textwrap.fill(
        " ".join(text.split()), width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def reflow(text: str, width: int = WIDTH) -> str:
    """Refill the prose paragraphs of an alert; a paragraph with indented or bulleted lines stays as written."""
    paragraphs = text.rstrip("\n").split("\n\n")
    kept = [p if any(line.startswith((" ", "- ")) for line in p.splitlines()) else fill(p, width) for p in paragraphs]
    return "\n\n".join(kept) + "\n"


def clean(value: str) -> str:
    """Collapse control characters (CR, LF, NUL, …) to a space: no header or line injection."""
    return _CONTROL.sub(" ", value).strip()


def format_date(value: dt.date, language: str) -> str:
    """Dates like "7 maart 2011 (07-03-2011)": unmistakable for a Dutch reader."""
    if language == "nl":
        return f"{value.day} {NL_MONTHS[value.month - 1]} {value.year} ({value:%d-%m-%Y})"
    return f"{value.day} {value:%B %Y} ({value:%d-%m-%Y})"


def format_moment(value: dt.datetime, language: str) -> str:
    """A local date and time for a receipt or alert."""
    if language == "nl":
        return f"{value.day} {NL_MONTHS[value.month - 1]} {value.year} om {value:%H:%M}"
    return f"{value.day} {value:%B %Y} at {value:%H:%M}"


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
        return Template(self.texts[key]).safe_substitute(
            {k: v if k in _BLOCKS else clean(v) for k, v in values.items()}
        )

    def _base(
        self, kind: str, subject: str, to: Sequence[Person | str], now: dt.datetime, *, message_id: str | None = None
    ) -> EmailMessage:
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

    def notice(
        self,
        pupil: Pupil,
        decision: RouteDecision,
        to: Sequence[Person],
        now: dt.datetime,
        *,
        disappears: dt.datetime | None = None,
    ) -> EmailMessage:
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
        local, today = (
            disappears.astimezone(self.config.schedule.timezone),
            now.astimezone(self.config.schedule.timezone).date(),
        )
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
        msg = self._base(
            "mdn", "Gelezen: Handle with Care" if self.language == "nl" else "Read: Handle with Care", [to], now
        )
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
        report.set_content(
            ("\r\n".join(lines) + "\r\n").encode("ascii", "replace"),
            maintype="message",
            subtype="disposition-notification",
            cte="7bit",
        )
        del report["MIME-Version"]
        msg.make_mixed()
        msg.set_type("multipart/report")
        msg.set_param("report-type", "disposition-notification")
        msg.attach(human)
        msg.attach(report)
        # Our own boundary: the email package's is 19 random decimal digits, which can read as a birth year.
        msg.set_boundary(f"hwc-{random_token()}")
        return msg

    def digest(
        self, items: Sequence[tuple[str, Mapping[str, str]]], to: Sequence[Person], now: dt.datetime
    ) -> EmailMessage:
        """One alert for everything a cycle found, no message content: its lines grouped by what to do.

        Each group is a heading, its lines, the one action for them and, where messages really stay in the
        mailbox, how to find them; the subject and importance follow the most urgent group.
        """
        groups: dict[str, list[str]] = {}
        #: Per group, the lines about a message that stays in the mailbox: (has folder and time, is flagged).
        staying: dict[str, list[tuple[bool, bool]]] = {}
        for template, values in items[:DIGEST_LINES]:
            kind = action_kind(template, values)
            groups.setdefault(kind, []).append(self._line(template, values))
            if template in _STAYING and kind != "not_ours":
                # The cycle passes flagged="1" where the server shows the mark as a flag (it keeps no keywords).
                staying.setdefault(kind, []).append(
                    ("folder" in values and "received" in values, values.get("flagged") == "1")
                )
        actions = ACTIONS[self.language]
        blocks = []
        for kind in sorted(groups, key=lambda k: _GROUP_ORDER.index(k) if k in _GROUP_ORDER else len(_GROUP_ORDER)):
            heading, action = actions[kind]
            block = heading + ":\n" + "".join(groups[kind]) + fill(self._text("action_line", action=action)) + "\n"
            if kind in staying:
                lines = staying[kind]
                number = "one" if len(lines) == 1 else "many"
                said = [self.texts[f"stays_{number}"]]
                if all(found for found, _flag in lines):
                    said.append(self.texts[f"find_{number}"])
                if all(flag for _found, flag in lines):
                    said.append(self.texts[f"flag_{number}"])
                block += fill(" ".join(said)) + "\n"
            elif kind == "not_ours":
                block += fill(self.texts["strangers_stay"]) + "\n"
            blocks.append(block + "\n")
        more = len(items) - DIGEST_LINES
        if more > 0:
            blocks.append(self._text("item_more", count=str(more), more=more_of(more, self.language)) + "\n")
        if "admin" in groups:
            blocks.append(self.texts["technical"] + "\n")
        msg = self._alert_base(self._urgency(groups), to, now)
        msg.set_content(Template(self.texts["alert_digest"]).safe_substitute(items="".join(blocks)))
        return msg

    def _line(self, template: str, values: Mapping[str, str]) -> str:
        """One digest line: codes (problem, cause, folder role, outcome, route, count) turned into words."""
        problems = PROBLEMS[self.language]
        shown = {k: v for k, v in values.items() if k != "flagged"}
        if "problem" in shown:
            shown["problem"] = problems.get(shown["problem"], problems["unreadable"])
        if "cause" in shown:
            shown["cause"] = cause_text(shown["cause"], self.language)
        if "outcome" in shown:
            shown["outcome"] = self.texts[f"outcome_{shown['outcome']}"]
        if "folder" in shown:
            shown["folder"] = FOLDER_ROLES[self.language].get(shown["folder"], FOLDER_ROLES[self.language]["inbox"])
        if "route" in shown:
            shown["route"] = self.route_label(shown["route"])
        if template in ("item_strangers", "item_cleanup"):
            shown["messages"] = count_of(int(shown.get("count", "1")), self.language)
        line = self._text(template, **shown)
        if template in self.config.messages.templates:
            return line  # the school's own line, as written
        return fill(line, indent="  ") + "\n"

    def route_label(self, route: str) -> str:
        """A route as a reader knows it: "de standaardroute", or by the name the school gave it."""
        if route == "default":
            return self.texts["route_default"]
        return self._text("route_named", route=route)

    @staticmethod
    def _urgency(kinds: Iterable[str]) -> str:
        found = set(kinds)
        if found & _URGENT:
            return "urgent"
        return "action" if found & _ACTION else "info"

    def _alert_base(self, urgency: str, to: Sequence[Person], now: dt.datetime) -> EmailMessage:
        """An alert's subject and importance by its urgency; a configured `alert_subject` replaces the urgent one."""
        if urgency == "urgent":
            subject = self.config.messages.alert_subject or self.texts["alert_subject"]
        else:
            subject = self.texts[f"subject_{urgency}"]
        msg = self._base("alert", subject, to, now)
        msg["Importance"] = "high" if urgency == "urgent" else "normal"
        return msg

    def test_mail(self, to: Person, roles: Sequence[str], now: dt.datetime) -> EmailMessage:
        """`check --send-test`'s mail to one person, naming the roles the config gives them ("zorgcoördinator")."""
        msg = self._base("test", TEST_MAIL_SUBJECT[self.language], [to], now)
        joined = (" en " if self.language == "nl" else " and ").join(roles)
        msg.set_content(
            TEST_MAIL_BODY[self.language].format(school=clean(self.config.messages.school_name), roles=clean(joined))
        )
        return msg

    def drill_mail(self, message_id: str, now: dt.datetime) -> EmailMessage:
        """The drill's test mail from the HwC mailbox to itself, under the one id this drill waits for."""
        msg = self._base(
            "drill", DRILL_MAIL_SUBJECT[self.language], [self.config.smtp.from_address], now, message_id=message_id
        )
        msg.set_content(DRILL_MAIL_BODY[self.language])
        return msg

    def drill_report(self, passed: bool, to: Sequence[Person], now: dt.datetime, **values: str) -> EmailMessage:
        """The drill's one short mail to the contact: passed with the times, or what failed, with the fix for the
        ICT admin under its own heading. `problem` is the drill_rules code of what failed."""
        msg = self._base("alert", DRILL_SUBJECTS[self.language][0 if passed else 1], to, now)
        msg["Importance"] = "normal" if passed else "high"
        if "proof" in values:  # our own paragraph (drill_rules.PROOF), wrapped for a mail client
            values["proof"] = textwrap.fill(clean(values["proof"]), 78)
        if not passed:
            causes = DRILL_CAUSES[self.language]
            values["error"] = causes.get(values.pop("problem", ""), causes["internal"])
        key = "drill_ok" if passed else "drill_failed"
        text = self._text(key, **values)  # drill_ok keeps its lines: its proof paragraph is wrapped above
        msg.set_content(text if passed or key in self.config.messages.templates else reflow(text))
        return msg

    def alert(self, key: str, to: Sequence[Person], now: dt.datetime, **values: str) -> EmailMessage:
        """A content-free alert to the school's contact and backup, with the action for its cause.

        Codes become words here: `problem` (an 08:15 cause), `cause` (an `HwcError.cause`, read as `$error`),
        `step` (the recall's); `$action` and `$technical` are filled from the composer's own tables.
        """
        urgency = ALERT_KINDS.get(key, "urgent")
        msg = self._alert_base(urgency, to, now)
        if "problem" in values:
            code = values["problem"]
            values["problem"] = PROBLEMS[self.language].get(code, PROBLEMS[self.language]["not_checked"])
            values.setdefault("action", action_text(_ACTION_OF.get(code, "check_now"), self.language))
        if "cause" in values:
            values["error"] = cause_text(values.pop("cause"), self.language)
        if "step" in values:
            steps = RECALL_STEPS[self.language]
            values["step"] = steps.get(values["step"], steps["login"])
        if key == "alert_failure":
            values.setdefault("action", action_text("broken", self.language))
        if "count" in values:
            values.setdefault("messages", count_of(int(values["count"]), self.language))
        values.setdefault("technical", self.texts["technical"])
        text = self._text(key, **values)
        msg.set_content(text if key in self.config.messages.templates else reflow(text))
        return msg

    def deadline_detail(
        self, problem: str, *, since: dt.datetime | None = None, cause: str | None = None, waiting: int = 0
    ) -> str:
        """The 08:15 alert's second line: since when and why it fails (a cause code), or how many messages wait."""
        if problem == "not_checked" and since is not None:
            local = since.astimezone(self.config.schedule.timezone)
            return self._text(
                "detail_failing", since=f"{local:%H:%M}", cause=cause_text(cause or "internal", self.language)
            )
        if problem == "not_checked":
            return self.texts["detail_not_checked"]
        return self._text("detail_waiting", messages=count_of(waiting, self.language))


__all__ = [
    "ACTIONS",
    "ALERT_KINDS",
    "CAUSES",
    "DIGEST_LINES",
    "DRILL_CAUSES",
    "DRILL_MAIL_BODY",
    "DRILL_MAIL_SUBJECT",
    "DRILL_SUBJECTS",
    "FOLDER_ROLES",
    "NL_MONTHS",
    "PROBLEMS",
    "RECALL_STEPS",
    "TEST_MAIL_BODY",
    "TEST_MAIL_SUBJECT",
    "TEXTS",
    "WIDTH",
    "Composer",
    "action_kind",
    "action_text",
    "cause_text",
    "clean",
    "count_of",
    "fill",
    "format_date",
    "format_moment",
    "more_of",
    "reflow",
]
