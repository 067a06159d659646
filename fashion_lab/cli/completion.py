"""Shell completion of overrides: Hydra's own, for a command that has subcommands.

``fashion-lab train --shell-completion install=bash`` prints a script to ``eval``. Hydra's script
would register the two words ``fashion-lab train`` as one program, which shells cannot do, so this
script registers ``fashion-lab``, completes the command names itself, and asks Hydra for the rest:
it runs ``fashion-lab train -sc query=bash`` (every command composes the same conf/) with the
line's overrides, and Hydra answers with the matching groups, options and keys.
"""

from __future__ import annotations

import sys

SHELLS = ("bash", "zsh")

_BASH = r"""# fashion-lab: Hydra override completion (from: fashion-lab train --shell-completion install=bash)
_fashion_lab_complete()
{
    local cur=${COMP_WORDS[COMP_CWORD]} args=() i
    if (( COMP_CWORD == 1 )); then
        COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
        return
    fi
    # the overrides typed so far (words with '='), not the command or a sweep name
    for (( i=2; i<COMP_CWORD; i++ )); do
        [[ ${COMP_WORDS[i]} == *=* ]] && args+=("${COMP_WORDS[i]}")
    done
    local choices
    choices=$(COMP_LINE="fashion-lab ${args[*]} $cur" "${COMP_WORDS[0]}" train -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$cur"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _fashion_lab_complete fashion-lab
"""


def script(shell: str, commands: list[str]) -> str:
    """The completion script for ``shell`` (zsh runs the bash one through bashcompinit, as Hydra's does)."""
    body = _BASH.replace("@COMMANDS@", " ".join(commands))
    return body if shell == "bash" else "autoload -Uz bashcompinit && bashcompinit\n" + body


def wants_script(argv: list[str]) -> bool:
    """``--shell-completion install=SHELL`` or ``uninstall=SHELL`` (a ``query=`` goes to Hydra)."""
    return bool({"-sc", "--shell-completion"} & set(argv)) and any(
        a.startswith(("install=", "uninstall=")) for a in argv)


def print_script(argv: list[str], commands: list[str]) -> int:
    """Print the (un)install script asked for in ``argv``; 2 with one line for an unknown shell."""
    action, _, shell = next(a for a in argv if a.startswith(("install=", "uninstall="))).partition("=")
    if shell not in SHELLS:
        print(f"fashion-lab: error: --shell-completion {action}={shell!r} is not supported; "
              f"choose from: {', '.join(SHELLS)}", file=sys.stderr)
        return 2
    print(script(shell, commands) if action == "install" else "complete -r fashion-lab 2> /dev/null")
    return 0
