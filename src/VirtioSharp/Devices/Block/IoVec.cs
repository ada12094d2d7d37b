using System.Runtime.InteropServices;

namespace VirtioSharp.Devices.Block;

/// <summary>
/// One piece of host memory an I/O reads into or writes from; laid out as POSIX <c>struct iovec</c> so a storage layer
/// can hand an array of them to preadv/pwritev or io_uring unchanged.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct IoVec
{
    /// <summary>Host address of the first byte.</summary>
    public nint Base;
    /// <summary>Bytes.</summary>
    public nuint Length;

    /// <summary>A vector of <paramref name="length"/> bytes at <paramref name="address"/>.</summary>
    public IoVec(nint address, nuint length) { Base = address; Length = length; }
}
