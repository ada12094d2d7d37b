namespace VirtioSharp.VhostUser.Protocol;

/// <summary>struct vhost_iotlb_msg (IOTLB_MSG): an IOVA range, the user address it maps to, permissions and the message type.</summary>
internal readonly record struct IotlbRequest(ulong Iova, ulong Size, ulong UserAddr, byte Perm, byte Type)
{
    /// <summary>Reads the fields (the trailing padding is not needed).</summary>
    public static IotlbRequest Parse(ref PayloadReader r) => new(r.U64(), r.U64(), r.U64(), r.U8(), r.U8());

    /// <summary>Writes the message into <paramref name="m"/> (<see cref="IotlbMsgType.Length"/> bytes; padding zeroed).</summary>
    public void Write(Span<byte> m)
    {
        m[..IotlbMsgType.Length].Clear();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(m, Iova);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(m[8..], Size);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(m[16..], UserAddr);
        m[24] = Perm;
        m[25] = Type;
    }

    /// <summary>The message as a new payload array.</summary>
    public byte[] ToArray()
    {
        var m = new byte[IotlbMsgType.Length];
        Write(m);
        return m;
    }
}
