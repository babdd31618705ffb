"""The ground floor: what every other part of the package uses and that
imports none of them (errors and the tools' error boundary, argparse
types, value rules, devices, atomic writes, output checks, mmpretrain's
import patch). Importing it registers nothing."""
