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

/// <summary>virtio-blk feature bits (virtio 1.2 §5.2.3).</summary>
public static class BlkFeature
{
    public const int SizeMax = 1;
    public const int SegMax = 2;
    public const int Geometry = 4;
    public const int ReadOnly = 5;
    public const int BlkSize = 6;
    public const int Flush = 9;
    public const int Topology = 10;
    public const int ConfigWce = 11;
    public const int Mq = 12;
    public const int Discard = 13;
    public const int WriteZeroes = 14;
    public const int Lifetime = 15;
    public const int SecureErase = 16;

    public static string? Name(int bit) => bit switch
    {
        SizeMax => "BLK_SIZE_MAX",
        SegMax => "BLK_SEG_MAX",
        Geometry => "BLK_GEOMETRY",
        ReadOnly => "BLK_RO",
        BlkSize => "BLK_BLK_SIZE",
        Flush => "BLK_FLUSH",
        Topology => "BLK_TOPOLOGY",
        ConfigWce => "BLK_CONFIG_WCE",
        Mq => "BLK_MQ",
        Discard => "BLK_DISCARD",
        WriteZeroes => "BLK_WRITE_ZEROES",
        Lifetime => "BLK_LIFETIME",
        SecureErase => "BLK_SECURE_ERASE",
        _ => null,
    };
}

/// <summary>virtio-console feature bits (virtio 1.2 §5.3.3).</summary>
public static class ConsoleFeature
{
    public const int Size = 0;
    public const int Multiport = 1;
    public const int EmergWrite = 2;
}
