namespace VirtioSharp.Platform;

/// <summary>What a device sees when it touches a private page of a protected guest.</summary>
public enum ProtectionMode : byte
{
    /// <summary>The access faults (TDX, POWER secure VM).</summary>
    Fault,
    /// <summary>The access succeeds on encrypted memory: reads return ciphertext, writes become garbage (SEV).</summary>
    Ciphertext,
}
