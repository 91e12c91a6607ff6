"""Job launching: Kaldi-style ``$cmd JOB=1:N log/x.JOB.log command ... JOB ...`` on a backend."""
