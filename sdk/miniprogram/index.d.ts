/** The wx object's parts the SDK uses (the mini-program's own wx). */
export interface WxLike {
  login(opts: { success(res: { code: string }): void; fail?(err: { errMsg?: string }): void }): void;
  request(opts: {
    url: string;
    method?: string;
    data?: string | object;
    header?: Record<string, string>;
    dataType?: string;
    success(res: { statusCode: number; data: any; header: Record<string, string> }): void;
    fail?(err: { errMsg?: string }): void;
  }): void;
  getStorageSync(key: string): any;
  setStorageSync(key: string, value: any): void;
  removeStorageSync(key: string): void;
}

export interface ClientOptions {
  /** wxidp's URL, e.g. https://id.example.com */
  issuer: string;
  clientId: string;
  /** Scope asked at login; default "openid offline_access". */
  scope?: string;
  /** Default: the global wx. */
  wx?: WxLike;
  /** Storage key of the tokens; default "wxidp.tokens:CLIENT_ID@ISSUER". Clients with one key share one refresh in flight. */
  storageKey?: string;
  /** Clock in milliseconds; default Date.now. */
  now?: () => number;
}

export interface Tokens {
  accessToken: string;
  refreshToken: string;
  idToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  scope: string;
}

export interface RequestResult {
  statusCode: number;
  data: any;
  header: Record<string, string>;
}

/** The user's profile claims, as PATCH /account answers them. */
export interface Profile {
  sub: string;
  nickname?: string;
  /** An https URL. */
  picture?: string;
  /** Seconds since the epoch. */
  updated_at?: number;
}

export interface ProfileUpdate {
  /** Up to 64 characters; "" clears it, null or undefined keeps it. */
  nickname?: string | null;
  /** An absolute https URL; "" clears it, null or undefined keeps it. */
  picture?: string | null;
}

export interface Client {
  login(opts?: { scope?: string }): Promise<Tokens>;
  logout(): Promise<void>;
  getAccessToken(): Promise<string>;
  request(opts: { url?: string; path?: string; method?: string; data?: string | object; header?: Record<string, string> }): Promise<RequestResult>;
  /** PATCH /account; needs scope profile (403 insufficient_scope otherwise). */
  updateProfile(update: ProfileUpdate): Promise<Profile>;
  /**
   * DELETE /account: erases the user. After a login older than 10 minutes it logs in again once and retries;
   * then the stored tokens are forgotten. The next login() creates a new user.
   */
  deleteAccount(): Promise<void>;
  decrypt(input: { encryptedData: string; iv: string }): Promise<any>;
  verifySignature(input: { rawData: string; signature: string }): Promise<boolean>;
  refreshSession(): Promise<void>;
  ticket(id: string): Promise<any>;
  scan(id: string): Promise<any>;
  approve(id: string): Promise<any>;
  deny(id: string): Promise<any>;
  tokens(): Tokens | null;
}

export const WECHAT_CODE_GRANT: string;

export class WxidpError extends Error {
  status: number;
  error: string;
  description: string;
}

export function createClient(options: ClientOptions): Client;
