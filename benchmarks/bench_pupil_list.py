"""Load and match times for generated pupil lists of 3,000 and 30,000 rows (fictional names).

Run: .venv/bin/python benchmarks/bench_pupil_list.py
Targets: loading 3,000 rows well under a second; matching one pupil in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from hwc_watcher.core.models import Person, Pupil, Route
from hwc_watcher.core.pupil_list import PupilListConfig
from hwc_watcher.core.routing import RoutingConfig
from hwc_watcher.edges import pupil_file
from hwc_watcher.edges.pupil_file import PupilListSource

FIRST = [
    "Bram", "Zoë", "Sanne", "Daan", "Sem", "Noor", "Özlem", "Anne Fleur", "Mohammed", "Fatima", "Lucas", "Emma",
    "Julia", "Finn", "Levi", "Tess", "Yara", "Renée", "Björn", "Çağla", "Thijs", "Mila", "Ravi",
]  # fmt: skip
SURNAMES = [
    ("de", "Vries"), ("van den", "Berg"), ("", "Jansen"), ("de", "Jong"), ("", "Bakker"), ("", "Yılmaz"),
    ("", "El Amrani-Jansen"), ("van 't", "Hof"), ("", "Şahin"), ("ter", "Horst"), ("", "Nguyen"),
    ("", "Kowalski"), ("", "Müller"), ("", "Visser"), ("van", "Dijk"), ("", "Smit"), ("", "Dekker"),
]  # fmt: skip
HEADER = "Leerlingnummer;Roepnaam;Voornamen;Tussenvoegsel;Achternaam;Geboortedatum;Locatie;Afdeling;Leerjaar;Klas"


def generate(path: Path, rows: int, seed: int = 7) -> list[Pupil]:
    """Write a Magister-style export; returns a signal per row as VT would write it."""
    rng = random.Random(seed)
    # Spread birth dates over as many years as the school has pupils for (about 1,500 per year group).
    days = max(6, rows // 1500 * 2) * 365
    lines = [HEADER]
    signals = []
    for i in range(rows):
        first, (infix, last) = rng.choice(FIRST), rng.choice(SURNAMES)
        born = dt.date(2007, 9, 1) + dt.timedelta(days=rng.randrange(days))
        year = rng.randint(1, 6)
        lines.append(
            f"{100000 + i};{first};{first};{infix};{last};{born:%d-%m-%Y};Noord;havo;{year};{year}H{i % 4 + 1}"
        )
        signals.append(Pupil(f"{first} {infix} {last}".replace("  ", " "), born))
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8-sig")
    path.chmod(0o600)  # the daemon refuses a list every user can read
    return signals


def bench(rows: int, directory: Path) -> None:
    """Print load time, stat-only time and per-pupil match time for one list size."""
    path = directory / f"leerlingen-{rows}.csv"
    signals = generate(path, rows)
    config = PupilListConfig(
        path=path,
        first_name="Roepnaam",
        official_first_names="Voornamen",
        infix="Tussenvoegsel",
        last_name="Achternaam",
        birth_date="Geboortedatum",
        route_columns=("Locatie", "Afdeling", "Leerjaar"),
        show_columns=("Klas",),
    )
    loads = []
    for _ in range(5):
        source = PupilListSource(config)
        started = time.perf_counter()
        snapshot = source.current()
        loads.append(time.perf_counter() - started)
        if snapshot.problem is not None:
            raise SystemExit(snapshot.problem)
    started = time.perf_counter()
    for _ in range(1000):
        source.current()
    unchanged = (time.perf_counter() - started) / 1000

    default = Route("default", Person("Z", "zorg@college.example.nl"))
    router = pupil_file.router(RoutingConfig(default=default, pupil_list=config))
    router.route(signals[0])  # load once
    sample = signals[:: max(1, len(signals) // 3000)]
    times = []
    notes: dict[str, int] = {}
    for pupil in sample:
        started = time.perf_counter()
        decision = router.route(pupil)
        times.append(time.perf_counter() - started)
        notes[decision.note] = notes.get(decision.note, 0) + 1
    times.sort()
    size_kb = path.stat().st_size / 1024
    print(f"{rows:>6} rows ({size_kb:,.0f} KiB)")
    print(
        f"    load (read + parse + index), best/median of 5: {min(loads) * 1000:7.1f} / "
        f"{statistics.median(loads) * 1000:7.1f} ms"
    )
    print(f"    unchanged-file check (one stat):               {unchanged * 1e6:7.1f} µs")
    print(
        f"    route one pupil ({len(sample)} signals), median/p99/max:  "
        f"{statistics.median(times) * 1000:.3f} / {times[int(len(times) * 0.99)] * 1000:.3f} / "
        f"{times[-1] * 1000:.3f} ms"
    )
    print(f"    outcomes: {dict(sorted(notes.items()))}")


def main() -> None:
    """Run both sizes in a throw-away directory."""
    with tempfile.TemporaryDirectory() as directory:
        for rows in (3_000, 30_000):
            bench(rows, Path(directory))


if __name__ == "__main__":
    main()
