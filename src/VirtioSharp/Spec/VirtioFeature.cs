namespace VirtioSharp.Spec;

/// <summary>Device-independent feature bit numbers (virtio 1.2 §6).</summary>
public static class VirtioFeature
{
    public const int IndirectDesc = 28;      // §2.7.5.3
    public const int EventIdx = 29;          // §2.7.7
    public const int Version1 = 32;
    public const int AccessPlatform = 33;    // was IOMMU_PLATFORM
    public const int RingPacked = 34;
    public const int InOrder = 35;
    public const int OrderPlatform = 36;
    public const int SrIov = 37;
    public const int NotificationData = 38;
    public const int NotifConfigData = 39;
    public const int RingReset = 40;

    /// <summary>Mask of a single feature bit.</summary>
    public static ulong Bit(int bit) => 1UL << bit;

    public static bool Has(ulong features, int bit) => (features & (1UL << bit)) != 0;

    /// <summary>Names for the bits this library knows, device-independent and virtio-blk.</summary>
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
