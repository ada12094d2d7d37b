namespace VirtioSharp.Platform.Transports;

/// <summary>virtio-pci layout constants: capability types, BAR 4 windows, common-config offsets, legacy I/O offsets.</summary>
internal static class PciLayout
{
    public const ushort VendorId = 0x1AF4;
    public const byte CapVendor = 0x09;
    public const byte CommonCfg = 1, NotifyCfg = 2, IsrCfg = 3, DeviceCfg = 4, PciCfg = 5;
    public const ulong CommonOffset = 0x0000, IsrOffset = 0x1000, DeviceOffset = 0x2000, NotifyOffset = 0x3000;
    public const uint NotifyMultiplier = 4;
    public const ulong Bar4Size = 0x4000;
    public const ulong Bar0Size = 0x100;
    // Common configuration (§4.1.4.3)
    public const ulong DeviceFeatureSelect = 0x00, DeviceFeature = 0x04, DriverFeatureSelect = 0x08, DriverFeature = 0x0C;
    public const ulong MsixConfig = 0x10, NumQueues = 0x12, DeviceStatus = 0x14, ConfigGeneration = 0x15;
    public const ulong QueueSelect = 0x16, QueueSize = 0x18, QueueMsixVector = 0x1A, QueueEnable = 0x1C, QueueNotifyOff = 0x1E;
    public const ulong QueueDesc = 0x20, QueueDriver = 0x28, QueueDevice = 0x30, CommonSize = 0x38;
    // Legacy I/O BAR 0 (§4.1.4.8)
    public const ulong LegacyHostFeatures = 0x00, LegacyGuestFeatures = 0x04, LegacyQueueAddress = 0x08, LegacyQueueSize = 0x0C;
    public const ulong LegacyQueueSelect = 0x0E, LegacyQueueNotify = 0x10, LegacyStatus = 0x12, LegacyIsr = 0x13, LegacyConfig = 0x14;
}
