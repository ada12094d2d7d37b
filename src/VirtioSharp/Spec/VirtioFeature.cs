namespace VirtioSharp.Spec;

/// <summary>Device-independent feature bit numbers (virtio 1.2 §6).</summary>
public static class VirtioFeature
{
    /// <summary>VIRTIO_F_INDIRECT_DESC: the driver may use indirect descriptor tables.</summary>
    public const int IndirectDesc = 28;      // §2.7.5.3
    /// <summary>VIRTIO_F_EVENT_IDX: used_event / avail_event notification suppression.</summary>
    public const int EventIdx = 29;          // §2.7.7
    /// <summary>VIRTIO_F_VERSION_1: the device is compliant with virtio 1.x (modern, little-endian).</summary>
    public const int Version1 = 32;
    /// <summary>VIRTIO_F_ACCESS_PLATFORM: the device accesses memory through the platform's DMA translation (IOMMU, bounce buffers).</summary>
    public const int AccessPlatform = 33;    // was IOMMU_PLATFORM
    /// <summary>VIRTIO_F_RING_PACKED: the packed virtqueue layout (§2.8).</summary>
    public const int RingPacked = 34;
    /// <summary>VIRTIO_F_IN_ORDER: buffers are used in the order they were made available.</summary>
    public const int InOrder = 35;
    /// <summary>VIRTIO_F_ORDER_PLATFORM: memory accesses need platform-strength ordering (real hardware devices).</summary>
    public const int OrderPlatform = 36;
    /// <summary>VIRTIO_F_SR_IOV: the device supports single root I/O virtualization (PCI).</summary>
    public const int SrIov = 37;
    /// <summary>VIRTIO_F_NOTIFICATION_DATA: the driver passes extra data in its device notifications (§2.9).</summary>
    public const int NotificationData = 38;
    /// <summary>VIRTIO_F_NOTIF_CONFIG_DATA: the driver uses data provided by the device as a virtqueue identifier in notifications.</summary>
    public const int NotifConfigData = 39;
    /// <summary>VIRTIO_F_RING_RESET: the driver can reset a queue individually (§2.6.1).</summary>
    public const int RingReset = 40;

    /// <summary>Mask of a single feature bit.</summary>
    public static ulong Bit(int bit) => 1UL << bit;

    /// <summary>Whether feature bit <paramref name="bit"/> is set in <paramref name="features"/>.</summary>
    public static bool Has(ulong features, int bit) => (features & (1UL << bit)) != 0;

    /// <summary>Names for the bits this library knows, device-independent, virtio-blk and virtio-net.</summary>
    public static string Name(int bit, DeviceId device = DeviceId.Reserved) => bit switch
    {
        IndirectDesc => "INDIRECT_DESC",
        EventIdx => "EVENT_IDX",
        Version1 => "VERSION_1",
        AccessPlatform => "ACCESS_PLATFORM",
        RingPacked => "RING_PACKED",
        InOrder => "IN_ORDER",
        OrderPlatform => "ORDER_PLATFORM",
        SrIov => "SR_IOV",
        NotificationData => "NOTIFICATION_DATA",
        NotifConfigData => "NOTIF_CONFIG_DATA",
        RingReset => "RING_RESET",
        _ when device == DeviceId.Block => BlkFeature.Name(bit) ?? $"bit{bit}",
        _ when device == DeviceId.Network => Net.NetFeature.Name(bit) ?? $"bit{bit}",
        _ => $"bit{bit}",
    };

    /// <summary>Formats a feature mask as "VERSION_1|ACCESS_PLATFORM|...".</summary>
    public static string Describe(ulong features, DeviceId device = DeviceId.Reserved)
    {
        if (features == 0) return "none";
        var parts = new List<string>();
        for (int bit = 0; bit < 64; bit++)
            if (Has(features, bit)) parts.Add(Name(bit, device));
        return string.Join('|', parts);
    }

    /// <summary>Parses "VERSION_1,ACCESS_PLATFORM,33" (names or bit numbers) into a mask.</summary>
    public static bool TryParse(string text, out ulong features, out string? error)
    {
        features = 0;
        error = null;
        foreach (var raw in text.Split([',', '|', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var name = raw.ToUpperInvariant();
            if (name.StartsWith("VIRTIO_F_", StringComparison.Ordinal)) name = name[9..];
            if (int.TryParse(name, out int n) && n is >= 0 and < 64) { features |= Bit(n); continue; }
            int found = -1;
            for (int bit = 0; bit < 64 && found < 0; bit++)
                if (Name(bit) == name) found = bit;
            if (found < 0)
            {
                error = $"unknown feature '{raw}': use a bit number 0-63 or one of INDIRECT_DESC, EVENT_IDX, VERSION_1, ACCESS_PLATFORM, RING_PACKED, IN_ORDER, ORDER_PLATFORM, NOTIFICATION_DATA";
                return false;
            }
            features |= Bit(found);
        }
        return true;
    }
}
