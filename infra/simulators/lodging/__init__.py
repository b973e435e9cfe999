"""The lodging partner simulator: a convention housing bureau holding room blocks per hotel,
room type and night, taking reservation requests, and announcing what it and the hotels
behind it do as events on its own topic. It is not Butterfly and shares none of its contract.
"""
