"""The alerter service: repeats the newest pre-signed alert to multicast and unicast targets."""
