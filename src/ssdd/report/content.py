"""What the report says, as format-free blocks: the overview, the teacher card, one card per distilled set
with its comparison against full data and no pre-training, the figures and the full table. Every number
comes from results.json (through `summarize`) or from a manifest."""

from __future__ import annotations

from typing import Any

from ssdd.distill.registry import find_method
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.gap import NOISE_FLOOR, shown_gap_closed
from ssdd.evaluation.report import split_note
from ssdd.report import formats as F
from ssdd.report.document import Block, Card, Cards, Facts, Figure, Heading, Notes, Paragraph, Table
from ssdd.report.figures import MODE_NAMES, panel_title
from ssdd.report.gather import REFERENCE_METHODS, REFERENCE_NAMES, DistilledInfo, ReportData, TeacherInfo

FULL_TABLE_HEADER = ["pre-training", "top-1 (%)", "retention", "gap closed", "vs no pre-training", "vs random",
                     "storage (img-eq)", "KiB", "compression", "m / pairs", "CKA to teacher", "pre-training time",
                     "pre-training steps", "samples seen", "speed-up", "distillation time", "distillation steps"]
PROTOCOL = EvaluateConfig()  # the `full` protocol of docs/protocol.md: the evaluation's defaults


def _several_archs(data: ReportData) -> bool:
    return len({p[0] for p in data.panels}) > 1


def _title(data: ReportData, panel: tuple[str, str, str]) -> str:
    return panel_title(*panel, several_archs=_several_archs(data))


def _count(value: Any) -> str:
    return F.DASH if value is None else f"{int(value):,}"


def _top1(summary: dict[str, Any] | None) -> str:
    """A summary row's mean ± std without n; a dash for a row that is absent."""
    if summary is None:
        return F.DASH
    return F.mean_std(summary["top1_mean"], summary["top1_std"], summary["seeds"], with_n=False)


def source_images(data: ReportData) -> int | None:
    full = next((r for r in data.rows if r["method"] in ("full_data", "full_data_same_recipe")), None)
    if full is not None and full.get("image_equivalents"):
        return int(full["image_equivalents"])
    manifests = [d.manifest for d in data.distilled if d.manifest is not None]
    return next((m["source"]["images"] for m in manifests if m.get("source", {}).get("images")), None)


# ---------------------------------------------------------------- overview


def _departures(config: dict[str, Any]) -> list[str]:
    """Where the run's settings differ from the `full` protocol of docs/protocol.md."""
    found = []
    seeds = config.get("seeds")
    if seeds is not None and seeds < PROTOCOL.seeds:
        found.append(f"{seeds} seed{'s' if seeds != 1 else ''} (protocol: {PROTOCOL.seeds})")
    pretrain = config.get("pretrain") or {}
    epochs = pretrain.get("epochs")
    own_epochs = f"{epochs:,} epochs " if epochs not in (None, PROTOCOL.pretrain.epochs) else ""
    if pretrain.get("max_iterations"):
        found.append(f"pre-training {own_epochs}capped at {pretrain['max_iterations']:,} SGD steps (protocol: "
                     f"{PROTOCOL.pretrain.epochs:,} epochs, no cap)")
    elif own_epochs:
        found.append(f"pre-training {epochs:,} epochs (protocol: {PROTOCOL.pretrain.epochs:,})")
    finetune = config.get("finetune") or {}
    by_role = finetune.get("small_by", "size") == "role"  # configs written before the setting went by size
    for key, what in (("iterations", "source-scale" if by_role else "large"),
                      ("small_iterations", "fine-grained" if by_role else "small")):
        default = getattr(PROTOCOL.finetune, key)
        if finetune.get(key) is not None and finetune[key] != default:
            found.append(f"fine-tuning {finetune[key]:,} iterations on {what} targets (protocol: {default:,})")
    if finetune and not by_role:
        found.append("fine-tuning length by the target's training-set size (protocol: by its role, "
                     f"{PROTOCOL.finetune.small_iterations:,} iterations for every fine-grained target)")
    precision = config.get("precision", "fp32")  # configs written before the setting computed in float32
    if precision != PROTOCOL.precision:
        found.append(f"training forward passes in {precision} (precision={precision}; protocol: "
                     f"{PROTOCOL.precision})")
    probe = (config.get("probe") or {}).get("iterations")
    if probe is not None and probe != PROTOCOL.probe.iterations:
        found.append(f"linear probe {probe:,} iterations (protocol: {PROTOCOL.probe.iterations:,})")
    full = config.get("full_data") or {}
    if full.get("enabled", True) and full.get("epochs") not in (None, PROTOCOL.full_data.epochs):
        found.append(f"tuned full-data row {full['epochs']:,} epoch{'s' if full['epochs'] != 1 else ''} "
                     f"(protocol: {PROTOCOL.full_data.epochs})")
    for section, what, applies in (("pretrain", "pre-training", True), ("finetune", "fine-tuning", True),
                                   ("full_data", "the tuned full-data row", full.get("enabled", True)),
                                   ("probe", "the linear probe", True)):
        size, default = (config.get(section) or {}).get("batch_size"), getattr(PROTOCOL, section).batch_size
        if applies and size is not None and size != default:
            found.append(f"{what} at batch {size:,} (protocol: {default:,})")
    return found


def _retention_departure(data: ReportData) -> list[str]:
    """Retention against the tuned full-data row: the protocol divides by the distilled rows' recipe."""
    if data.retention_label != "full_data":
        return []
    return [f"retention divided by {REFERENCE_NAMES['full_data']} (protocol: "
            f"{REFERENCE_NAMES['full_data_same_recipe']}, a row this run does not have)"]


def _finetune_rule(finetune: dict[str, Any]) -> str:
    """How the run chose each target's fine-tuning length (configs without `small_by` went by size)."""
    small = _count(finetune.get("small_iterations"))
    if finetune.get("small_by", "size") == "role":
        names = ", ".join(finetune.get("source_scale") or []) or "none named"
        return (f"by role: {_count(finetune.get('iterations'))} for the source-scale targets ({names}), {small} "
                "for the others")
    return f"by size: {small} for targets under {_count(finetune.get('small_threshold', 10_000))} training images"


def _finetune_fact(data: ReportData) -> str | None:
    """The fine-tuning iterations each target ran, from its rows (older rows lack them: then the config's
    iterations), and the rule that chose them."""
    finetune = data.config.get("finetune") or {}
    used: dict[str, Any] = {}
    for row in data.rows:
        if row["mode"] == "finetune" and row.get("finetune_iterations") is not None:
            used.setdefault(row["target"], row["finetune_iterations"])
    if used:
        ran = ", ".join(f"{target} {_count(n)}" for target, n in used.items()) + " iterations"
        return ran + (f" ({_finetune_rule(finetune)})" if finetune else "")
    if finetune:  # which target got which length is then not recorded: both lengths and the rule
        long = finetune.get("iterations")
        short = finetune.get("small_iterations", long)
        lengths = _count(long) if short == long else f"{_count(long)} or {_count(short)}"
        return f"{lengths} iterations ({_finetune_rule(finetune)})"
    return None


def _cap(pretrain: dict[str, Any]) -> str:
    """", at most N SGD steps" for a capped pre-training (pretrain.max_iterations), else nothing."""
    return f", at most {_count(pretrain['max_iterations'])} SGD steps" if pretrain.get("max_iterations") else ""


def _epochs(value: Any) -> str:
    return f"{_count(value)} epoch{'' if value == 1 else 's'}"


def _steps(data: ReportData, label: str) -> str:
    steps = {r.get("pretrain_steps") for r in data.rows if r["label"] == label} - {None}
    return f", {_count(steps.pop())} SGD steps" if len(steps) == 1 else ""


def _full_data_recipes(data: ReportData) -> dict[str, str]:
    """How each full-data row of the run was trained, from its config (and the steps its rows record)."""
    pretrain, full = data.config.get("pretrain") or {}, data.config.get("full_data") or {}
    return {
        "full_data_same_recipe": "every source image with the teacher's representation of the un-augmented image "
                                 f"as its target, trained exactly like the distilled sets: "
                                 f"{_epochs(pretrain.get('epochs'))}"
                                 f"{_steps(data, 'full_data_same_recipe') or _cap(pretrain)}, constant lr "
                                 f"{pretrain.get('lr', '?')}, "
                                 "no augmentation",
        "full_data": f"{_epochs(full.get('epochs'))}{_steps(data, 'full_data')} over crop + flipped source "
                     "images with the teacher's representations of each augmented batch, cosine lr from "
                     f"{full.get('lr', '?')}",
    }


def retention_sentence(data: ReportData) -> str | None:
    """One sentence: which full-data row retention divides by, and how each full-data row was trained."""
    labels = data.full_data_labels
    if not labels:
        return None
    recipes = _full_data_recipes(data)
    text = f"Retention divides by \"{REFERENCE_NAMES[labels[0]]}\" ({recipes[labels[0]]})"
    if len(labels) > 1:
        return text + f"; \"{REFERENCE_NAMES[labels[1]]}\" ({recipes[labels[1]]}) is shown beside it."
    if labels[0] == "full_data":
        return text + (f", the only full-data row of this run: the protocol's denominator, "
                       f"\"{REFERENCE_NAMES['full_data_same_recipe']}\", was not run.")
    return text + "."


def overview(data: ReportData) -> list[Block]:
    config = data.config
    targets = list(dict.fromkeys(r["target"] for r in data.rows))
    archs = list(dict.fromkeys(r["arch"] for r in data.rows))
    modes = [MODE_NAMES.get(m, m) for m in dict.fromkeys(r["mode"] for r in data.rows)]
    seeds = sorted({r["seed"] for r in data.rows})
    devices = sorted({r["device"] for r in data.rows if r.get("device")})
    layouts = {bool(r.get("channels_last")) for r in data.rows}  # rows from before the setting: contiguous
    layout = "mixed" if len(layouts) > 1 else "channels-last" if True in layouts else "contiguous"
    recorded = [d.manifest.get("source", {}).get("name") for d in data.distilled if d.manifest]
    source = (config.get("source") or {}).get("name") or (config.get("source") or {}).get("path") or \
        next((name for name in recorded if name), "unknown")
    n_source = source_images(data)
    facts = [("source", f"{source}" + (f" ({n_source:,} images)" if n_source else "")),
             ("targets", ", ".join(targets)), ("architectures", ", ".join(archs)), ("modes", ", ".join(modes)),
             ("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))})"),
             ("evaluation device", (", ".join(devices) or F.DASH) + f" ({layout} memory format)")]
    pretrain = config.get("pretrain") or {}
    if pretrain:
        facts.append(("pre-training", f"{_count(pretrain.get('epochs'))} epochs over every stored view"
                                      f"{_cap(pretrain)}"))
    finetune = _finetune_fact(data)
    if finetune:
        facts.append(("fine-tuning", finetune))
    if config.get("cka_images"):
        facts.append(("CKA", f"linear, on {config['cka_images']:,} source test images"))
    blocks: list[Block] = [Facts(facts)]
    sentence = retention_sentence(data)
    if sentence:
        blocks.append(Paragraph(sentence))
    split = split_note(data.summary, config)  # rows that scored a validation split, not the test split
    if split:
        blocks.append(Paragraph(split))
    departures = _departures(config) + _retention_departure(data)
    if departures:
        blocks.append(Notes(departures, "Reduced protocol: this run departs from the `full` scale of "
                                        "docs/protocol.md", style="protocol"))
    return blocks


def glance(data: ReportData) -> Table:
    """Per panel: the references (every full-data row, the retention denominator first) and the best set."""
    full_labels = data.full_data_labels
    rows = []
    for panel in data.panels:
        members = [s for s in data.summary if (s["arch"], s["target"], s["mode"]) == panel]
        distilled = [s for s in members if s["method"] not in REFERENCE_METHODS]
        best = max(distilled, key=lambda s: s["top1_mean"]) if distilled else None
        rows.append([
            _title(data, panel), *[_top1(data.reference(label, *panel)) for label in full_labels],
            _top1(data.reference("no_pretrain", *panel)), best["label"] if best else F.DASH, _top1(best),
            F.fixed(best and best["retention"]), shown_gap_closed(best, data.summary, F.fixed) if best else F.DASH,
            F.fixed(best and best["gain_vs_no_pretrain"], sign=True),
        ])
    return Table(["target · mode", *[REFERENCE_NAMES[label] for label in full_labels], "no pre-training",
                  "best distilled set", "its top-1 (%)", "retention", "gap closed", "vs no pre-training"], rows)


# ---------------------------------------------------------------- teacher


def teacher_card(teacher: TeacherInfo, data: ReportData, figure_keys: set[str]) -> Card:
    manifest = teacher.manifest
    blocks: list[Block] = []
    if manifest is None:
        recorded = next((d.manifest["teacher"] for d in data.distilled if d.manifest and d.manifest.get("teacher")),
                        None)
        pairs = [("folder", f"`{teacher.named}` (not found)" if teacher.named else F.DASH)]
        if recorded:
            pairs += [("fingerprint", recorded.get("fingerprint") or F.DASH),
                      ("feature dim", _count(recorded.get("feature_dim"))),
                      ("linear probe", F.fixed(recorded.get("linear_probe_top1")) + " % top-1 (from a distilled "
                                                                                  "set's manifest)")]
        blocks.append(Facts(pairs))
        return Card("Teacher", blocks, "Barlow Twins")
    model = manifest.get("model", {})
    arch = model.get("name", "?") + (f", width {model['width']}" if model.get("width") else "") + \
        (f", depth {model['depth']}" if model.get("depth") else "")
    probe = manifest.get("linear_probe") or {}
    probe_text = F.fixed(probe.get("top1")) + " % top-1" if probe.get("top1") is not None else \
        probe.get("note") or F.DASH
    if probe.get("dataset"):
        probe_text += f" on {probe['dataset']} {probe.get('split', '')}".rstrip()
    if probe.get("train_top1") is not None:
        probe_text += f" (train {F.fixed(probe['train_top1'])} %)"
    device = manifest.get("device") or F.DASH
    if (manifest.get("world_size") or 1) > 1:
        device += f" x {manifest['world_size']} processes"
    wall = F.seconds(manifest.get("wall_clock_s"))
    if manifest.get("images_per_s"):
        wall += f" ({manifest['images_per_s']:,.0f} images/s)"
    pairs = [("architecture", arch), ("epochs", _count(manifest.get("epochs"))),
             ("linear probe", probe_text), ("feature dim", _count(manifest.get("feature_dim"))),
             ("resolution", f"{manifest.get('resolution', '?')} px"),
             ("training images", _count(manifest.get("train_images"))),
             ("device", device), ("wall-clock", wall)]
    if manifest.get("final_loss") is not None:
        monitor = manifest.get("monitor_top1")
        pairs.append(("final loss", f"{manifest['final_loss']:.2f}" +
                      (f" (online monitor {monitor:.2f} % top-1)" if monitor is not None else "")))
    pairs += [("fingerprint", manifest.get("fingerprint") or F.DASH), ("folder", f"`{teacher.path}`")]
    if teacher.mismatch:
        pairs.append(("does not match", teacher.mismatch))
    blocks.append(Facts(pairs))
    aside: list[Block] = []
    if "teacher" in figure_keys:
        aside.append(Figure("teacher", "training curves (history.json)"))
    elif teacher.history is None:
        aside.append(Paragraph("No history.json beside the teacher: no training curves.", small=True))
    return Card("Teacher", blocks, "Barlow Twins", aside)


# ---------------------------------------------------------------- distilled sets


def _storage_split(split: dict[str, Any]) -> str:
    parts = [f"{name.replace('_', ' ')} {split[name]:.2f}" for name in
             ("bases", "means", "coefficients", "approximation_networks") if split.get(name) is not None]
    text = " · ".join(parts)
    if split.get("fixed_image_equivalents") is not None:
        text += (f" (fixed {split['fixed_image_equivalents']:.2f} + {split['per_sample_image_equivalents']:.4f} "
                 "per sample)")
    return text


def _approximation_table(errors: dict[str, Any]) -> Table:
    rows = [[view, F.fixed(e.get("relative_error"), 3), F.fixed(e.get("relative_error_without_network"), 3)]
            for view, e in errors.items()]
    return Table(["view", "relative error", "without network"], rows,
                 "approximation error of the rebuilt targets (manifest `approximation_error`)")


def distilled_facts(info: DistilledInfo, n_source: int | None) -> list[tuple[str, str]]:
    manifest, row = info.manifest or {}, info.rows[0]
    method = row["method"] + (f" (name {manifest['name']})" if manifest.get("name") else "")
    budget = row.get("budget")
    budget_text = F.DASH if budget is None else f"{budget:g} image-equivalents"
    if manifest.get("budget_counts"):
        budget_text += f" ({manifest['budget_counts']})"
    compression = row.get("compression")
    # the images the row's ratio divided (an imported set's declared count may be another source's)
    source = (round(compression * row["image_equivalents"]) if compression and row.get("image_equivalents")
              else manifest.get("source", {}).get("images") or n_source)
    storage = f"{F.image_equivalents(row.get('image_equivalents'))} image-equivalents · {F.kib(row.get('bytes'))} KiB"
    pairs = [("method", method), ("budget", budget_text), ("storage", storage),
             ("compression", F.ratio(compression) + (f" ({source:,} source images)" if source else ""))]
    if manifest.get("storage_split"):
        pairs.append(("storage split (img-eq)", _storage_split(manifest["storage_split"])))
    m, pairs_n = row.get("m") or manifest.get("m"), row.get("views")
    views = manifest.get("boost", {}).get("views")
    if views:
        pairs.append(("m x views", f"{_count(m)} x {len(views)} ({', '.join(views)}) = {_count(pairs_n)} pairs"))
    else:
        pairs.append(("m", f"{_count(m)} images" + (f", {_count(pairs_n)} training pairs" if pairs_n != m else "")))
    pca = [(name, manifest.get(f"{key}_pca_explained")) for name, key in (("images", "image"), ("targets", "target"))]
    if any(v is not None for _, v in pca):
        pairs.append(("PCA variance explained", " · ".join(f"{name} {F.percent_share(v)}" for name, v in pca
                                                            if v is not None)))
    distill_s = manifest.get("wall_clock_s", row.get("distill_s"))
    device = manifest.get("device") or row.get("distill_device")
    text = F.seconds(distill_s) + (f" on {device}" if device else "")
    if manifest.get("steps") is not None:
        done = manifest.get("steps_done", manifest["steps"])
        text += f", {done:,} of {manifest['steps']:,} outer steps"
    if manifest.get("final_loss") is not None:
        text += f", final loss {manifest['final_loss']:.4g}"
    pairs.append(("distillation", text))
    if manifest.get("teacher"):
        pairs.append(("teacher", f"{manifest['teacher'].get('fingerprint')} (`{manifest['teacher'].get('path')}`)"))
    missing = "not found" + (f" (`{info.named}`)" if info.named else "")
    pairs.append(("folder", f"`{info.path}`" if info.path else missing))
    if info.mismatch:
        pairs.append(("does not match", info.mismatch))
    return pairs


def _cell(summary: dict[str, Any] | None, key: str, fmt: Any) -> str:
    return F.DASH if summary is None else fmt(summary.get(key))


def comparison(info: DistilledInfo, data: ReportData) -> list[Table]:
    """Against no pre-training and full data: accuracy per target and mode (every full-data row, the retention
    denominator first), then cost per architecture against the retention denominator."""
    mine = {(s["arch"], s["target"], s["mode"]): s for s in data.summary_of(info.label)}
    full_labels = data.full_data_labels
    accuracy = []
    for panel in data.panels:
        s = mine.get(panel)
        if s is None:
            continue
        accuracy.append([_title(data, panel), _top1(s), _top1(data.reference("no_pretrain", *panel)),
                         *[_top1(data.reference(label, *panel)) for label in full_labels],
                         F.fixed(s["retention"]), shown_gap_closed(s, data.summary, F.fixed),
                         F.fixed(s["gain_vs_no_pretrain"], sign=True)])
    tables = [Table(["top-1 (%)", info.label, "no pre-training", *[REFERENCE_NAMES[label] for label in full_labels],
                     "retention", "gap closed", "vs no pre-training"], accuracy)]
    denominator = data.retention_label
    for arch in dict.fromkeys(p[0] for p in data.panels):
        panel = next((p for p in data.panels if p[0] == arch and p in mine), None)
        if panel is None:
            continue
        s = mine[panel]
        none, full = data.reference("no_pretrain", *panel), data.reference(denominator, *panel)
        time_ratio = s["pretrain_s"] / full["pretrain_s"] if full and full["pretrain_s"] else None
        rows = [
            ["pre-training time", F.seconds(s["pretrain_s"]), F.DASH, _cell(full, "pretrain_s", F.seconds)],
            ["pre-training SGD steps", _count(s.get("pretrain_steps")), F.DASH,
             _cell(full, "pretrain_steps", _count)],
            ["pre-training samples seen", _count(s.get("pretrain_samples")), "0",
             _cell(full, "pretrain_samples", _count)],
            ["time ratio (÷ full data)", F.ratio(time_ratio, ""), F.DASH, "1" if full else F.DASH],
            ["speed-up over full data", F.ratio(s["pretrain_speedup"]), F.DASH, "1x" if full else F.DASH],
            ["CKA to the teacher", F.fixed(s["cka_to_teacher"], 3),
             _cell(none, "cka_to_teacher", lambda v: F.fixed(v, 3)),
             _cell(full, "cka_to_teacher", lambda v: F.fixed(v, 3))],
            ["stored (image-equivalents)", F.image_equivalents(s["image_equivalents"]), "0",
             _cell(full, "image_equivalents", F.image_equivalents)],
            ["compression (source ÷ stored)", F.ratio(s["compression"]), F.DASH,
             _cell(full, "compression", F.ratio)],
        ]
        caption = f"cost ({arch})" if _several_archs(data) else "cost"
        tables.append(Table(["", info.label, "no pre-training", REFERENCE_NAMES.get(denominator or "", "full data")],
                            rows, caption))
    return tables


def distilled_card(info: DistilledInfo, data: ReportData, figure_keys: set[str]) -> Card:
    blocks: list[Block] = [Facts(distilled_facts(info, source_images(data)))]
    key = image_key(info)
    if key in figure_keys:
        views = (info.manifest or {}).get("boost", {}).get("views")
        blocks.append(Figure(key, "first images, one row per image and one column per stored view" if views
                             else "first images"))
    aside: list[Block] = [Paragraph("Against no pre-training and full data"), *comparison(info, data)]
    errors = (info.manifest or {}).get("approximation_error")
    if errors:
        aside.append(_approximation_table(errors))
    method = info.rows[0]["method"]
    found = find_method(method)
    return Card(info.label, blocks, found.note if found and found.note else method, aside)


def image_key(info: DistilledInfo) -> str:
    return "images_" + "".join(c if c.isalnum() else "_" for c in info.label)


# ---------------------------------------------------------------- full table


def full_table_row(s: dict[str, Any], manifest: dict[str, Any] | None = None,
                   panel: list[dict[str, Any]] | None = None) -> list[str]:
    """One line of a full table; `manifest` (the set's) gives the outer steps of rows measured before the
    rows recorded them (distill_steps); `panel` (the table's rows) whether its gap closed is within noise."""
    reference = s["method"] in REFERENCE_METHODS
    steps = s.get("distill_steps")
    if steps is None and manifest:
        steps = manifest.get("steps_done")
    return [
        REFERENCE_NAMES.get(s["label"], s["label"]), F.mean_std(s["top1_mean"], s["top1_std"], s["seeds"]),
        F.fixed(s["retention"]), shown_gap_closed(s, panel or [], F.fixed),
        F.fixed(s["gain_vs_no_pretrain"], sign=True), F.fixed(s["gain_vs_random"], sign=True),
        F.image_equivalents(s["image_equivalents"]), F.kib(s["bytes"]), F.ratio(s["compression"]),
        f"{_count(s['m'])} / {_count(s['views'])}", F.fixed(s["cka_to_teacher"], 3),
        F.DASH if s["method"] == "no_pretrain" else F.seconds(s["pretrain_s"]),
        F.DASH if s["method"] == "no_pretrain" else _count(s.get("pretrain_steps")),
        F.DASH if s["method"] == "no_pretrain" else _count(s.get("pretrain_samples")), F.ratio(s["pretrain_speedup"]),
        F.DASH if reference else F.seconds(s["distill_s"]),
        F.DASH if reference else _count(steps),
    ]


def full_tables(data: ReportData) -> list[Table]:
    """One table per (arch, target, mode): the distilled sets in results.json's order, then the references."""
    order = {label: i for i, label in enumerate([d.label for d in data.distilled] + list(REFERENCE_METHODS))}
    manifests = {d.label: d.manifest for d in data.distilled}
    tables = []
    for panel in data.panels:
        members = sorted((s for s in data.summary if (s["arch"], s["target"], s["mode"]) == panel),
                         key=lambda s: order.get(s["label"], len(order)))
        tables.append(Table(FULL_TABLE_HEADER, [full_table_row(s, manifests.get(s["label"]), members) for s in members],
                            _title(data, panel),
                            [s["method"] in REFERENCE_METHODS for s in members]))
    return tables


DEFINITIONS = (
    "top-1: mean ± sample std over seeds (n = number of seeds; no std for one seed). Retention: top-1 over the "
    "full-data row's (same architecture, target and mode): \"full data, distilled rows' recipe\" when the run has "
    "it, else \"full data, tuned recipe\". Gap closed: (top-1 - no pre-training's) / (that full-data row's - no "
    "pre-training's), the share of the distance from no pre-training to full data this row covers (1 = as good "
    "as full data, 0 = no better than no pre-training); \"n/a (within noise)\" where that full-data row is within "
    f"noise of no pre-training (closer than the larger std over seeds, or than {NOISE_FLOOR:g} points). "
    "vs no pre-training / vs random: difference in points to "
    "the no-pre-training row and to `random@N` at the same budget. Storage: every stored value in image-equivalents "
    "(floats / C·H·W) and KiB. Compression: source images over stored image-equivalents. m / pairs: distilled "
    "images and training pairs (every stored view). Pre-training steps: the SGD steps of one pre-training; "
    "samples seen: the pairs (or source images) those steps passed through the network, their batches added up "
    "(a set smaller than the batch counts the set at every step; `-` where the rows predate the record and "
    "config.yaml does not give it exactly). "
    "Speed-up: the pre-training time of the full-data row retention divides by over this row's, paired by "
    "architecture and seed; time ratio: this row's mean pre-training time over that full-data row's. Distillation "
    "time and steps: the wall-clock and outer steps of the run that made the set. CKA: linear "
    "CKA of the pre-trained encoder to the teacher on source test images."
)


# ---------------------------------------------------------------- the whole document


def compose(data: ReportData, figure_keys: set[str]) -> list[Block]:
    blocks: list[Block] = [Heading(f"Evaluation report: {data.eval_dir.resolve().name}", 1)]
    blocks.append(Paragraph(f"Built by `ssdd report` from `{data.eval_dir}` (results.json: {len(data.rows)} rows) "
                            "and the teacher and distilled folders below.", small=True))
    blocks.extend(overview(data))
    if data.notes:
        blocks.append(Notes(data.notes, "Missing or inconsistent inputs"))
    blocks += [Heading("At a glance", 2, "glance"), glance(data)]
    if "accuracy" in figure_keys:
        blocks.append(Figure("accuracy", "top-1 per target and mode: distilled sets (error bars = std over seeds "
                                         "when n > 1) against no pre-training and the full-data rows (horizontal "
                                         "lines)"))
    blocks += [Heading("Teacher and distilled sets", 2, "sets"),
               Cards([teacher_card(data.teacher, data, figure_keys),
                      *[distilled_card(d, data, figure_keys) for d in data.distilled]])]
    figures: list[Block] = []
    if "budget" in figure_keys:
        figures.append(Figure("budget", "top-1 against the budget, for methods evaluated at several budgets"))
    if "architectures" in figure_keys:
        figures.append(Figure("architectures", "top-1 of every pre-training on each architecture (error bars = std "
                                               "over seeds when n > 1; squares: the reference rows)"))
    if "loss" in figure_keys:
        figures.append(Figure("loss", "distillation loss (each set's metrics.jsonl)"))
    if figures:
        blocks += [Heading("Figures", 2, "figures"), *figures]
    blocks += [Heading("Full table", 2, "table"), *full_tables(data), Paragraph(DEFINITIONS, small=True)]
    if data.versions:
        blocks.append(Paragraph("Versions: " + ", ".join(f"{k} {v}" for k, v in data.versions.items()), small=True))
    return blocks
