using System.Buffers.Binary;

namespace VirtioSharp.Spec.Net;

/// <summary>
/// <c>struct virtio_net_hdr_v1</c> (virtio 1.2 §5.1.6): precedes every packet on the receive and transmit queues.
/// 12 bytes with VERSION_1 or MRG_RXBUF (num_buffers included), 10 bytes for a legacy device without MRG_RXBUF
/// (§5.1.6.1). Little endian under VERSION_1; a legacy device uses the guest's endianness, which is little endian on every
/// platform this library runs on.
/// </summary>
public record struct VirtioNetHdr(NetHdrFlags Flags, byte GsoType, ushort HdrLen, ushort GsoSize, ushort CsumStart, ushort CsumOffset, ushort NumBuffers)
{
    /// <summary>Bytes of the header with num_buffers.</summary>
    public const int Size = 12;
    /// <summary>Bytes of the legacy header without num_buffers.</summary>
    public const int LegacySize = 10;

    /// <summary>The header's length for the negotiated <paramref name="features"/> (§5.1.6.1).</summary>
    public static int SizeFor(ulong features) =>
        VirtioFeature.Has(features, VirtioFeature.Version1) || VirtioFeature.Has(features, NetFeature.MrgRxbuf) ? Size : LegacySize;

    /// <summary>Parses the first 10 or 12 bytes of <paramref name="b"/> (num_buffers reads 0 from a 10-byte header).</summary>
    public static VirtioNetHdr Parse(ReadOnlySpan<byte> b) => new(
        (NetHdrFlags)b[0], b[1],
        BinaryPrimitives.ReadUInt16LittleEndian(b[2..]), BinaryPrimitives.ReadUInt16LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[6..]), BinaryPrimitives.ReadUInt16LittleEndian(b[8..]),
        b.Length >= Size ? BinaryPrimitives.ReadUInt16LittleEndian(b[10..]) : (ushort)0);

    /// <summary>Writes the header into the first 10 or 12 bytes of <paramref name="b"/> (its length decides).</summary>
    public readonly void Write(Span<byte> b)
    {
        b[0] = (byte)Flags;
        b[1] = GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], HdrLen);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(b[6..], CsumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], CsumOffset);
        if (b.Length >= Size) BinaryPrimitives.WriteUInt16LittleEndian(b[10..], NumBuffers);
    }
}
