namespace VirtioSharp.Spec;

/// <summary>Device status field bits (virtio 1.2 §2.1).</summary>
[Flags]
public enum DeviceStatus : byte
{
    /// <summary>Written by the driver to reset the device (§2.4).</summary>
    Reset = 0,
    /// <summary>The guest has noticed the device.</summary>
    Acknowledge = 1,
    /// <summary>The guest knows how to drive the device.</summary>
    Driver = 2,
    /// <summary>The driver is set up and ready to drive the device.</summary>
    DriverOk = 4,
    /// <summary>The driver has acknowledged the features it understands; feature negotiation is complete.</summary>
    FeaturesOk = 8,
    /// <summary>The device hit an error it cannot recover from; the driver must reset it (§2.1.2).</summary>
    DeviceNeedsReset = 64,
    /// <summary>The guest gave up on the device.</summary>
    Failed = 128,
}
