// With the rest of the virtio-blk wire format under Spec/Block; the namespace stays VirtioSharp.Spec (next to
// VirtioFeature) so the public type name does not change.
namespace VirtioSharp.Spec;

/// <summary>virtio-blk feature bits (virtio 1.2 §5.2.3).</summary>
internal static class BlkFeature
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
