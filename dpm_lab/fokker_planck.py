"""The Fokker-Planck equation in 1D (Ch. 4, §4.1.4, App. B): a finite-difference solver for dp/dt = -d(f p)/dx + g^2/2 d2p/dx2."""

__all__: list[str] = []
