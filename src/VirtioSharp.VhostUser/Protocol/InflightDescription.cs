namespace VirtioSharp.VhostUser.Protocol;

/// <summary>struct VhostUserInflight (GET_INFLIGHT_FD, SET_INFLIGHT_FD): the region's size and offset, queues and queue size.</summary>
internal readonly record struct InflightDescription(ulong MmapSize, ulong MmapOffset, ushort NumQueues, ushort QueueSize)
{
    /// <summary>The fields are 20 bytes, padded to 24 on the wire (QEMU checks the padded size).</summary>
    public const int WireSize = 24;

    /// <summary>Reads the fields.</summary>
    public static InflightDescription Parse(ref PayloadReader r) => new(r.U64(), r.U64(), r.U16(), r.U16());

    /// <summary>Writes the padded wire form.</summary>
    public void Write(Span<byte> b)
    {
        b[..WireSize].Clear();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(b, MmapSize);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(b[8..], MmapOffset);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(b[16..], NumQueues);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(b[18..], QueueSize);
    }
}
