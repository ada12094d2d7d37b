namespace VirtioSharp.Drivers;

/// <summary>Probing a device failed; the message says what the device did and what to change.</summary>
public sealed class VirtioProbeException(string message) : Exception(message);
