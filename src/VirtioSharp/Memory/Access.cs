namespace VirtioSharp.Memory;

/// <summary>Kind of a memory access, also used as a permission set.</summary>
[Flags]
public enum Access : byte
{
    /// <summary>No access; as a permission, nothing is allowed.</summary>
    None = 0,
    /// <summary>The device reads memory (driver-to-device buffers, ring fields it consumes).</summary>
    Read = 1,
    /// <summary>The device writes memory (device-to-driver buffers, used ring).</summary>
    Write = 2,
    /// <summary>Both; as a permission, everything is allowed.</summary>
    ReadWrite = Read | Write,
}
