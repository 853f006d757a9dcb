"""The hotline's voice gateway and its `hotline` command."""
