"""`--mean`/`--std` of import-teacher and import-distilled: what their help says and the one-line usage errors."""

import pytest

from ssdd.cli import main

COMMANDS = [["import-teacher", "ckpt.pt", "-f", "krr_st", "-o", "out"], ["import-distilled", "x_syn.pt", "-o", "out"]]


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_help_says_three_numbers_per_channel_in_pixel_units_given_together(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    usage = " ".join(out.split("\n\n")[0].split())
    assert "[--mean R,G,B] [--std R,G,B]" in usage  # not `R,G,B [R,G,B ...]`: any number of triples
    text = " ".join(out.split())
    assert text.count("3 numbers, one per channel, in [0, 1] pixel units") == 2
    assert "give --std with it" in text and "give --mean with it" in text


def usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flags", "said"), [
    (["--mean", "125.3,123,114", "--std", "0.2,0.2,0.2"], "--mean: expected 3 numbers in [0, 1] (pixel / 255, one "
                                                          "per channel), got 125.3,123,114 (0-255 pixel values? "
                                                          "divide them by 255)"),
    (["--mean", "0.5,0.5,0.5", "--std", "0,0.2,0.2"], "--std: expected 3 numbers in (0, 1]"),
    (["--mean", "-0.1", "0.5", "0.5", "--std", "0.2,0.2,0.2"], "--mean: expected 3 numbers in [0, 1]"),
    (["--mean", "0.5,0.5", "--std", "0.2,0.2,0.2"], "--mean: expected 3 numbers, one per channel (R,G,B or R G B) "
                                                    "in [0, 1] pixel units, got '0.5,0.5'"),
])
def test_a_wrong_count_or_range_is_one_line_before_anything_is_read(command, flags, said, capsys, tmp_path):
    line = usage_error([*command[:-1], str(tmp_path / "out"), *flags], capsys)
    assert line.startswith(f"ssdd {command[0]}: error: argument ") and said in line
    assert not (tmp_path / "out").exists()


def test_values_inside_the_range_are_taken():
    from ssdd.cli.commands import build_parser

    args = build_parser().parse_args(["import-distilled", "x", "-o", "o", "--mean", "0", "0.5", "1", "--std", "1,1,1"])
    assert (args.mean, args.std) == ([0.0, 0.5, 1.0], [1.0, 1.0, 1.0])
