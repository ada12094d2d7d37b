namespace VirtioSharp.Spec;

/// <summary>Device status field bits (virtio 1.2 §2.1).</summary>
[Flags]
public enum DeviceStatus : byte
{
    Reset = 0,
    Acknowledge = 1,
    Driver = 2,
    DriverOk = 4,
    FeaturesOk = 8,
    DeviceNeedsReset = 64,
    Failed = 128,
}
